"""The one training loop (textrec.training): resume, checkpoints, caps, patience, accelerate."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from training_worker import TINY, planted, weights_checksum
from training_worker import main as worker_main

import textrec
from textrec.data.splits import leave_one_out
from textrec.evaluation import run_protocol
from textrec.models import seq_trainer
from textrec.models.base import TrainView
from textrec.models.sasrec import SASRec
from textrec.training import Trainer, TrainingConfig, checkpoint_dirs, last_checkpoint, lr_factor

torch.set_num_threads(1)
ROOT = Path(textrec.__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "training_worker.py"


@pytest.fixture(scope="module")
def split():
    return leave_one_out(planted())


def _sasrec(**kw) -> SASRec:
    return SASRec(**{**TINY, "epochs": 5, **kw})


def _run(split, **kw):
    model = _sasrec(**kw)
    res = run_protocol(model, split, ks=(10,), progress=False)
    return model, res


def _strip(history):
    return [{k: v for k, v in h.items() if "seconds" not in k} for h in history]


@pytest.fixture(scope="module")
def uninterrupted(split, tmp_path_factory):
    """The reference: 5 epochs, never interrupted (checkpointing on: it must not change results)."""
    return _run(split, output_dir=str(tmp_path_factory.mktemp("ref")), checkpoint_every=4)


class _Interrupt(Exception):
    pass


def _interrupting_trainer(after_steps: int):
    """A Trainer that raises once ``after_steps`` optimizer steps are done (a simulated crash)."""

    class Interrupting(Trainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)

            def hook(t: Trainer) -> None:
                if t.state.global_step >= after_steps:
                    raise _Interrupt

            self.on_step_end = hook

    return Interrupting


# ---- (b) kill and resume ---------------------------------------------------------------------
def test_interrupted_run_resumes_to_the_same_result(split, uninterrupted, tmp_path, monkeypatch):
    ref, ref_res = uninterrupted
    out = str(tmp_path / "run")
    # 48 windows -> 3 batches of 16 per epoch; stop in epoch 4, after the checkpoint at step 8
    monkeypatch.setattr(seq_trainer, "Trainer", _interrupting_trainer(10))
    with pytest.raises(_Interrupt):
        _run(split, output_dir=out, checkpoint_every=4)
    monkeypatch.undo()
    ck = last_checkpoint(out)
    assert ck is not None and ck.name == "step-000000008"
    state = json.loads((ck / "trainer_state.json").read_text())["state"]
    assert state["epoch"] == 2 and state["step_in_epoch"] == 2  # a checkpoint inside an epoch
    resumed, res = _run(split, output_dir=out, checkpoint_every=4, resume=True)
    assert _strip(resumed.history) == _strip(ref.history)
    assert abs(weights_checksum(resumed) - weights_checksum(ref)) < 1e-6
    for k, v in ref_res.valid.metrics.items():
        assert res.valid.metrics[k] == pytest.approx(v, abs=1e-6)
    for k, v in ref_res.test.metrics.items():
        assert res.test.metrics[k] == pytest.approx(v, abs=1e-6)


def test_checkpointing_does_not_change_results(split, uninterrupted):
    plain, res = _run(split)
    ref, ref_res = uninterrupted
    assert _strip(plain.history) == _strip(ref.history)
    assert weights_checksum(plain) == weights_checksum(ref)


def test_resume_of_a_finished_run_trains_nothing(split, uninterrupted, tmp_path):
    out = str(tmp_path / "done")
    first, _ = _run(split, output_dir=out, checkpoint_every=100)
    assert json.loads((last_checkpoint(out) / "trainer_state.json").read_text())["state"]["finished"]
    t = time.perf_counter()
    again, _ = _run(split, output_dir=out, checkpoint_every=100, resume=True)
    assert _strip(again.history) == _strip(first.history)
    assert weights_checksum(again) == weights_checksum(first)
    assert time.perf_counter() - t < 30


def test_resume_true_without_checkpoint_says_so(split, tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        _run(split, output_dir=str(tmp_path / "empty"), resume=True)


# ---- (c) incomplete checkpoints --------------------------------------------------------------
def test_incomplete_checkpoint_is_skipped(split, uninterrupted, tmp_path, monkeypatch):
    ref, _ = uninterrupted
    out = tmp_path / "run"
    monkeypatch.setattr(seq_trainer, "Trainer", _interrupting_trainer(9))
    with pytest.raises(_Interrupt):
        _run(split, output_dir=str(out), checkpoint_every=4)
    monkeypatch.undo()
    good = last_checkpoint(out)
    assert good.name == "step-000000008"
    # a newer checkpoint cut short (no trainer_state.json) and a temp folder left by a crash
    bad = out / "checkpoints" / "step-000000016"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"partial")
    (out / "checkpoints" / ".tmp-step-000000020").mkdir()
    with pytest.warns(UserWarning, match="incomplete checkpoint"):
        assert last_checkpoint(out) == good
    with pytest.warns(UserWarning, match="incomplete checkpoint"):
        resumed, _ = _run(split, output_dir=str(out), checkpoint_every=4, resume="auto")
    assert _strip(resumed.history) == _strip(ref.history)
    assert abs(weights_checksum(resumed) - weights_checksum(ref)) < 1e-6


def test_checkpoint_folder_contents_and_pruning(split, tmp_path):
    out = tmp_path / "run"
    _run(split, output_dir=str(out), checkpoint_every=3, keep_checkpoints=2, epochs=2)
    dirs = checkpoint_dirs(out)
    assert len(dirs) == 2
    files = {p.name for p in dirs[-1].iterdir()}
    assert {"model.safetensors", "best.safetensors", "optimizer.pt", "scheduler.json", "rng-0.safetensors",
            "rng-0.json", "trainer_state.json"} <= files
    assert not list((out / "checkpoints").glob(".tmp-*"))
    # the optimizer state loads without unpickling arbitrary objects
    torch.load(dirs[-1] / "optimizer.pt", weights_only=True)


def test_sigkilled_subprocess_resumes_to_the_same_result(tmp_path):
    """A real SIGKILL once a checkpoint exists, then a resumed run: same metrics as one run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ref_json, run_json, out = tmp_path / "ref.json", tmp_path / "run.json", tmp_path / "run"
    args = ["--epochs", "20", "--checkpoint-every", "3"]
    worker_main([str(ref_json), str(tmp_path / "ref"), *args])  # the reference, in this process
    proc = subprocess.Popen([sys.executable, str(WORKER), str(run_json), str(out), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            ck = last_checkpoint(out)
            if ck is not None and int(ck.name.split("-")[1]) >= 6:
                break
            time.sleep(0.02)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not killed:
        pytest.skip("the run finished before it could be killed (machine too fast for this test)")
    assert not run_json.exists()
    subprocess.run([sys.executable, str(WORKER), str(run_json), str(out), *args, "--resume"],
                   check=True, env=env, timeout=120, capture_output=True)
    ref, run = json.loads(ref_json.read_text()), json.loads(run_json.read_text())
    assert run["history"] == ref["history"]
    assert abs(run["checksum"] - ref["checksum"]) < 1e-6
    assert run["valid"] == pytest.approx(ref["valid"], abs=1e-6)
    assert run["test"] == pytest.approx(ref["test"], abs=1e-6)


# ---- (a) two processes under accelerate launch -----------------------------------------------
def test_two_cpu_processes_under_accelerate_launch(tmp_path):
    """The tiny SASRec recipe trains as 2 CPU processes (DDP over gloo), learns the pattern, and a
    second launch resumed from a checkpoint in the middle of the run ends where the first did.

    ``accelerate launch --cpu --num_processes 2`` starts a single process unless an MPI hostfile
    is configured (accelerate #2741), so the two processes come from its torchrun launcher with
    the GPUs hidden; textrec then asks accelerate for CPU processes.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "ACCELERATE_USE_CPU": "true"}

    def launch(out: Path, *extra: str) -> dict:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(29500 + (os.getpid() + len(extra)) % 1000),
               str(WORKER), str(out), str(tmp_path / "run"), "--epochs", "4", "--checkpoint-every", "3",
               "--keep", "10", *extra]
        proc = subprocess.run(cmd, env=env, timeout=150, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(out.read_text())

    res = launch(tmp_path / "ddp.json")
    assert res["world_size"] == 2
    assert res["history"][-1]["loss"] < res["history"][0]["loss"]
    assert res["valid"]["hr@10"] >= 0.9 and res["test"]["ndcg@10"] >= 0.6
    # 48 windows -> 24 per process -> 2 steps per epoch, 8 in all: resume from step 3 (mid-epoch 2)
    mid = tmp_path / "run" / "checkpoints" / "step-000000003"
    assert json.loads((mid / "trainer_state.json").read_text())["world_size"] == 2
    assert (mid / "rng-1.safetensors").is_file()
    again = launch(tmp_path / "resumed.json", "--resume", str(mid))
    assert again["history"] == res["history"]
    assert abs(again["checksum"] - res["checksum"]) < 1e-6
    assert again["test"] == pytest.approx(res["test"], abs=1e-6)


# ---- the loop on a toy model -----------------------------------------------------------------
class _Line(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 1)


def _toy_data(n: int = 64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3


def _toy_trainer(config: TrainingConfig, evaluate=None, **kw) -> tuple[Trainer, _Line]:
    model = _Line()
    x, y = _toy_data()
    gen = torch.Generator().manual_seed(config.seed)

    def batches(epoch):
        perm = torch.randperm(len(x), generator=gen)
        return [perm[s:s + config.batch_size] for s in range(0, len(x), config.batch_size)]

    def loss(idx):
        return ((model.lin(x[idx]) - y[idx]) ** 2).mean()

    return Trainer(config, model, batches=batches, loss=loss, evaluate=evaluate, rngs={"g": gen},
                   progress=False, **kw), model


# ---- (d) wall-clock cap ----------------------------------------------------------------------
def test_max_minutes_stops_and_is_recorded(split):
    trainer, _ = _toy_trainer(TrainingConfig(epochs=1000, batch_size=8, max_minutes=0.01),
                              evaluate=lambda: {"loss": 1.0})
    fast = trainer.loss_fn
    trainer.loss_fn = lambda b: (time.sleep(0.01), fast(b))[1]
    t = time.perf_counter()
    res = trainer.fit()
    assert time.perf_counter() - t < 10
    assert res.stopped == "max_minutes" and len(res.history) < 1000
    assert "valid" in res.history[-1]  # the cut epoch is still evaluated
    # an engine records it in its own history
    # patience beyond any reachable epoch: on a fast idle machine patience must not stop it first
    m = _sasrec(epochs=100_000, max_minutes=0.02, patience=1_000_000)
    m.fit(TrainView.from_split(split), progress=False)
    assert len(m.history) < 100_000 and m.history[-1]["stopped"] == "max_minutes=0.02 reached"


def test_max_cpu_minutes_counts_cpu_not_sleep():
    """A CPU cap ignores time spent waiting (a contended machine) and stops on CPU actually spent."""
    trainer, _ = _toy_trainer(TrainingConfig(epochs=40, batch_size=8, max_cpu_minutes=0.005, patience=100),
                              evaluate=lambda: {"loss": 1.0})
    fast = trainer.loss_fn

    def burn(b):
        t = time.process_time()
        while time.process_time() - t < 0.002:  # CPU work, so the cap is reached
            pass
        return fast(b)

    trainer.loss_fn = lambda b: (time.sleep(0.003), burn(b))[1]
    res = trainer.fit()
    assert res.stopped == "max_cpu_minutes" and len(res.history) < 40
    assert res.train_cpu_seconds >= 0.3 and res.train_seconds > res.train_cpu_seconds  # sleeping is not charged
    assert [r["cpu_seconds"] for r in res.history] == sorted(r["cpu_seconds"] for r in res.history)
    with pytest.raises(ValueError, match="max_cpu_minutes"):
        TrainingConfig(max_cpu_minutes=0)


# ---- (e) patience and best-weight restore ----------------------------------------------------
def test_patience_stops_and_best_weights_are_restored():
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9, 0.9])
    snapshots = []

    def evaluate():
        snapshots.append(model.lin.weight.detach().clone())
        return {"ndcg@10": next(scores)}

    trainer, model = _toy_trainer(TrainingConfig(epochs=6, batch_size=16, patience=2, metric="ndcg@10"),
                                  evaluate=evaluate)
    res = trainer.fit()
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4]  # 2 evaluations without gain after epoch 2
    assert res.stopped == "early_stop" and res.best_epoch == 2 and res.best_metric == 0.5
    assert torch.equal(model.lin.weight, snapshots[1])
    assert not torch.equal(model.lin.weight, snapshots[-1])


def test_lower_is_better_with_min_delta():
    vals = iter([1.0, 0.99995, 0.5, 0.6])
    trainer, _ = _toy_trainer(TrainingConfig(epochs=4, batch_size=16, patience=5, min_delta=1e-4),
                              evaluate=lambda: {"loss": next(vals)})
    res = trainer.fit()
    assert res.best_epoch == 3 and res.best_metric == 0.5  # 0.99995 is not a gain of more than 1e-4


# ---- optimisation details --------------------------------------------------------------------
def test_gradient_accumulation_equals_the_larger_batch():
    a, ma = _toy_trainer(TrainingConfig(epochs=3, batch_size=32, lr=0.05))
    b, mb = _toy_trainer(TrainingConfig(epochs=3, batch_size=16, lr=0.05, grad_accumulation=2))
    # the same samples per optimizer step: accumulate two halves of each 32-sample batch
    b.batches_fn = lambda e, f=a.batches_fn: [h for full in f(e) for h in (full[:16], full[16:])]
    b.rngs = a.rngs
    a.fit()
    a.rngs["g"].manual_seed(0)
    b.fit()
    assert torch.allclose(ma.lin.weight, mb.lin.weight, atol=1e-6)
    assert b.state.global_step == a.state.global_step == 6


def test_lr_schedule_matches_warmup_and_linear_decay():
    assert lr_factor(0, 4, 100) == 0.25 and lr_factor(3, 4, 100) == 1.0 and lr_factor(50, 4, 100) == 1.0
    assert lr_factor(50, 4, 100, "linear", 0.05) == pytest.approx(0.5)
    assert lr_factor(99, 4, 100, "linear", 0.05) == pytest.approx(0.05)
    trainer, _ = _toy_trainer(TrainingConfig(epochs=2, batch_size=16, lr=0.1, warmup_ratio=0.5, schedule="linear"))
    lrs = []
    trainer.on_step_end = lambda t: lrs.append(t.optimizer.param_groups[0]["lr"])
    trainer.fit()
    assert trainer.state.total_steps == 8  # 4 batches x 2 epochs; warm-up = 4 steps
    # the lr in force for steps 1..8: warm-up 0.5, 0.75, 1, then linear decay from step 4
    assert lrs == pytest.approx([0.05, 0.075, 0.1, 0.05, 0.0375, 0.025, 0.0125, 0.0])


def test_bf16_mixed_precision_trains_on_cpu():
    trainer, model = _toy_trainer(TrainingConfig(epochs=2, batch_size=16, mixed_precision="bf16"))
    res = trainer.fit()
    assert all(np.isfinite(r["loss"]) for r in res.history)
    assert model.lin.weight.dtype == torch.float32


def test_nonfinite_loss_raises():
    cfg = TrainingConfig(epochs=1, batch_size=16)
    model = _Line()
    t = Trainer(cfg, model, batches=lambda e: [0], loss=lambda b: model.lin.weight.sum() * float("nan"),
                progress=False)
    with pytest.raises(FloatingPointError):
        t.fit()


@pytest.mark.parametrize("bad", [dict(epochs=-1), dict(batch_size=0), dict(mixed_precision="fp8"),
                                 dict(checkpoint_every=5), dict(resume=True), dict(schedule="cosine"),
                                 dict(max_minutes=0), dict(lr=0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        TrainingConfig(**bad)


def test_engine_configs_share_the_training_options():
    from textrec.explain.trainer import TrainConfig
    from textrec.p5.trainer import P5TrainConfig

    shared = TrainingConfig.training_fields()
    for cls in (seq_trainer.SeqTrainerConfig, P5TrainConfig, TrainConfig):
        assert issubclass(cls, TrainingConfig) and shared <= {f for f in cls.__dataclass_fields__}
    assert P5TrainConfig().schedule == "linear" and TrainConfig().metric == "loss"
    assert seq_trainer.SeqTrainerConfig().metric == "ndcg@10"


def test_every_recipe_trainer_section_still_loads():
    """Recipe YAML keys kept their names: each trainer section builds its engine's config."""
    from textrec.explain.trainer import TrainConfig
    from textrec.p5.trainer import P5TrainConfig
    from textrec.recipes import config_from_dict, load_recipe, recipe_dirs

    seen = 0
    for path in sorted(recipe_dirs()[0].glob("*.yaml")):
        recipe = load_recipe(str(path))
        if path.stem.startswith(("sasrec", "vqrec")):
            seq_trainer.SeqTrainerConfig.from_dict(recipe.get("trainer"))
        elif path.stem.startswith("p5"):
            config_from_dict(P5TrainConfig, recipe.get("trainer"), "P5 trainer")
        elif path.stem == "erra":
            config_from_dict(TrainConfig, {**recipe["trainer"], **recipe.get("lm_trainer", {})}, "trainer")
        else:
            continue
        seen += 1
    assert seen >= 10


def test_accelerate_state_is_left_clean_for_the_next_accelerator():
    from accelerate.state import AcceleratorState

    trainer, _ = _toy_trainer(TrainingConfig(epochs=1, batch_size=16, mixed_precision="bf16"))
    trainer.fit()
    assert not AcceleratorState._shared_state  # a later Accelerator (e.g. TRL's) picks its own settings


def test_p5_interrupted_and_resumed_matches_one_run(tmp_path, monkeypatch):
    """P5: tied T5 weights, a numpy shuffling generator, warm-up + linear decay, clipping."""
    from test_p5 import N_ITEMS, SHORT, planted_sequences, tiny_model

    from textrec.indexing import build_index
    from textrec.p5 import trainer as p5_trainer
    from textrec.p5.serializer import P5Serializer, SerializerConfig, TrainData

    seqs = planted_sequences(n_users=16)
    index = build_index("collaborative", seqs, N_ITEMS, n_clusters=3, leaf_size=4)
    ser = P5Serializer(index, None, SerializerConfig(max_history=3), templates=SHORT)
    data = TrainData(seqs, N_ITEMS)

    def run(interrupt_after=None, **kw):
        model = tiny_model(index, ser, data)
        cfg = p5_trainer.P5TrainConfig(epochs=2, batch_size=16, lr=5e-3, warmup_steps=3, output_dir=str(tmp_path),
                                       checkpoint_every=2, **kw)
        if interrupt_after is not None:
            monkeypatch.setattr(p5_trainer, "Trainer", _interrupting_trainer(interrupt_after))
        try:
            hist = p5_trainer.train_p5(model, ser, data, None, cfg, progress=False)
        finally:
            monkeypatch.undo()
        return model, hist

    ref, ref_hist = run()
    shutil.rmtree(tmp_path / "checkpoints")
    with pytest.raises(_Interrupt):
        run(interrupt_after=3)
    resumed, hist = run(resume=True)
    strip = [{k: v for k, v in e.items() if "seconds" not in k} for e in hist["epochs"]]
    assert strip == [{k: v for k, v in e.items() if "seconds" not in k} for e in ref_hist["epochs"]]
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_engine_config_defaults_are_the_former_ones():
    from textrec.explain.trainer import TrainConfig
    from textrec.p5.trainer import P5TrainConfig

    former = {
        seq_trainer.SeqTrainerConfig: dict(epochs=200, batch_size=128, lr=1e-3, weight_decay=0.0, patience=10,
                                           eval_every=1, metric="ndcg@10", seed=0, grad_clip=None, warmup_steps=0),
        P5TrainConfig: dict(epochs=10, batch_size=64, lr=1e-3, weight_decay=0.01, warmup_steps=100, grad_clip=1.0,
                            eval_every=1, patience=3, max_minutes=None, seed=0, schedule="linear", min_lr_ratio=0.05),
        TrainConfig: dict(epochs=10, batch_size=64, lr=1e-3, weight_decay=0.01, warmup_steps=100, grad_clip=1.0,
                          patience=2, max_minutes=None, seed=0, eval_batch_size=256, metric="loss", min_delta=1e-4),
    }
    for cls, values in former.items():
        cfg = cls()
        assert {k: getattr(cfg, k) for k in values} == values, cls.__name__
