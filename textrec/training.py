"""The one training loop of textrec, on HF ``accelerate``.

Every engine (SASRec / VQ-Rec, P5, the ERRA explainers) trains through :class:`Trainer`. An
engine supplies three callables and keeps everything else here:

* ``batches(epoch) -> Sequence`` — the epoch's batches (anything ``loss`` understands), in the
  order to train on them. Shuffling belongs to the engine, from a generator it registers in
  ``rngs`` so a checkpoint can replay it.
* ``loss(batch) -> Tensor | Mapping | None`` — the training loss of one batch; a mapping holds
  ``"loss"``, optionally ``"weight"`` (how much the batch counts in the epoch's mean loss) and
  other scalar parts to log. ``None`` skips the batch.
* ``evaluate() -> Mapping[str, float]`` — validation metrics; ``config.metric`` selects the one
  for early stopping and best-weight selection.

The loop owns the rest, defined once in :class:`TrainingConfig`: seeding, AdamW with warm-up and
an optional linear decay, gradient accumulation, gradient clipping, mixed precision where the
device has it, periodic evaluation, patience, best-weight restore, a wall-clock cap
(``max_minutes``) and a CPU-time cap (``max_cpu_minutes``; each recorded in the history when it
stopped training), one tqdm bar whose ETA
respects that cap, and resumable checkpoints every ``checkpoint_every`` optimizer steps.

Checkpoints (``<output_dir>/checkpoints/step-<N>/``) hold the weights and the best weights
(safetensors), the optimizer state (``torch.save``, loaded back with ``weights_only=True``), the
scheduler, every RNG state, and the loop counters and history (JSON). Each is written into a
temporary folder and renamed when complete, so a run killed mid-write leaves the previous
checkpoint usable; resuming picks the newest complete one and ends with the same weights and
metrics as a run that was never interrupted.

Under ``accelerate launch`` (several processes, CPU or GPU) each process trains on its share of
every epoch's batches (``batch_size`` is per process), gradients are averaged across processes,
the main process evaluates and broadcasts the metrics so every process takes the same
early-stopping decision, and the main process writes checkpoints (RNG states: one file per
process; multi-node runs need ``output_dir`` on a shared file system).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textrec.options import progress_bar as tqdm

MIXED_PRECISION = ("no", "bf16", "fp16")
SCHEDULES = ("constant", "linear")
CHECKPOINT_PREFIX = "step-"
_STATE_FILE = "trainer_state.json"
_CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.json", "rng-0.safetensors",
                     "rng-0.json", _STATE_FILE)


@dataclass
class TrainingConfig:
    """Options every trainer shares; engine configs inherit these and add their own."""

    epochs: int = 10
    batch_size: int = 64               # per process under ``accelerate launch``
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0              # linear warm-up over this many optimizer steps ...
    warmup_ratio: float = 0.0          # ... or this fraction of all steps, whichever is longer
    schedule: str = "constant"         # after warm-up: "constant" or "linear" decay to min_lr_ratio
    min_lr_ratio: float = 0.0          # floor of the linear decay, as a fraction of lr
    grad_accumulation: int = 1         # batches per optimizer step
    mixed_precision: str = "no"        # "no", "bf16" or "fp16"; "no" where the device lacks it
    grad_clip: float | None = None     # max gradient norm (None or 0: no clipping)
    patience: int = 10                 # evaluations without improvement before stopping
    eval_every: int = 1                # epochs between validation evaluations
    metric: str = "loss"               # validation metric for early stopping / best weights
    greater_is_better: bool | None = None  # None: False for metrics named "loss", else True
    min_delta: float = 0.0             # an improvement must beat the best by more than this
    max_minutes: float | None = None   # wall-clock cap on training (resumed runs included); it can
                                       # stop inside an accumulation group, whose batches then count for nothing
    max_cpu_minutes: float | None = None  # cap on this process's CPU time in training (valid checks included),
                                       # the budget that holds on a shared machine; stops like max_minutes
    seed: int = 0
    checkpoint_every: int | None = None  # optimizer steps between resumable checkpoints
    keep_checkpoints: int = 2          # newest complete checkpoints kept on disk
    output_dir: str | None = None      # where checkpoints go (``<output_dir>/checkpoints``)
    resume: bool | str = False         # True: newest complete checkpoint (error if none);
                                       # "auto": resume if there is one; or a checkpoint path

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.eval_every < 1 or self.grad_accumulation < 1:
            raise ValueError("epochs must be >= 0; batch_size, eval_every and grad_accumulation >= 1")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0 (got {self.lr}, {self.weight_decay})")
        if self.warmup_steps < 0 or not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_steps must be >= 0 and warmup_ratio in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got '{self.schedule}'")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("min_lr_ratio must be in [0, 1]")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got '{self.mixed_precision}'")
        if self.grad_clip is not None and self.grad_clip < 0:
            raise ValueError("grad_clip must be >= 0")
        if self.patience < 1:
            raise ValueError("patience must be >= 1")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError("max_minutes must be > 0 (or None for no cap)")
        if self.max_cpu_minutes is not None and not self.max_cpu_minutes > 0:
            raise ValueError("max_cpu_minutes must be > 0 (or None for no cap)")
        if self.checkpoint_every is not None:
            if self.checkpoint_every < 1:
                raise ValueError("checkpoint_every must be >= 1 (or None for no checkpoints)")
            if not self.output_dir:
                raise ValueError("checkpoint_every needs output_dir")
        if self.keep_checkpoints < 1:
            raise ValueError("keep_checkpoints must be >= 1")
        if self.resume not in (False, True, "auto") and not isinstance(self.resume, (str, os.PathLike)):
            raise ValueError(f"resume must be false, true, 'auto' or a checkpoint path, got {self.resume!r}")
        if self.resume in (True, "auto") and not self.output_dir:
            raise ValueError("resume needs output_dir (or a checkpoint path)")

    @property
    def higher_is_better(self) -> bool:
        """Direction of ``metric``."""
        if self.greater_is_better is not None:
            return bool(self.greater_is_better)
        return "loss" not in self.metric

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict."""
        return asdict(self)

    @classmethod
    def training_fields(cls) -> set[str]:
        """Names of the shared options (not an engine's own)."""
        return {f.name for f in fields(TrainingConfig)}


def lr_factor(step: int, warmup: int, total: int, schedule: str = "constant", min_ratio: float = 0.0) -> float:
    """Multiplier of ``lr`` at optimizer step ``step`` (0-based): linear warm-up, then constant or
    linear decay towards ``min_ratio``."""
    f = min(1.0, (step + 1) / max(warmup, 1))
    if schedule == "linear" and step >= warmup:
        f *= max(min_ratio, 1.0 - step / max(total, 1))
    return f


def resolve_mixed_precision(requested: str, device: torch.device) -> str:
    """The requested precision if the device supports it, else "no" (with a warning)."""
    if requested == "no":
        return "no"
    if device.type == "cuda":
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            warnings.warn("bf16 requested but this GPU lacks it; training in fp32", stacklevel=3)
            return "no"
        return requested
    if device.type == "cpu" and requested == "bf16":
        return "bf16"
    warnings.warn(f"{requested} requested on {device.type}, which lacks it; training in fp32", stacklevel=3)
    return "no"


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """False on every process but the first under ``accelerate launch``: only it should write
    artifacts and results."""
    return int(os.environ.get("RANK", "0")) == 0


def make_accelerator(mixed_precision: str = "no", device: torch.device | str | None = None):
    """``(accelerator, owned)``: an ``accelerate.Accelerator`` for one fit.

    ``device`` pins a single-process run to a device ("cpu" keeps it off the GPU); under
    ``accelerate launch`` with several processes the launcher decides. Accelerate keeps its state
    process-wide: a single-process fit reuses a compatible state, replaces an incompatible one,
    and ``owned`` says the state is this fit's to clear afterwards (:func:`release_accelerator`),
    so a later Accelerator (TRL's, say) starts from its own settings.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedDataParallelKwargs

    cpu, owned = False, False
    if not _distributed():
        dev = torch.device(device) if device is not None else None
        cpu = dev is not None and dev.type == "cpu"
        target = dev or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        mixed_precision = resolve_mixed_precision(mixed_precision, target)
        if AcceleratorState._shared_state:
            state = AcceleratorState()
            if state.device.type != target.type or state.mixed_precision != mixed_precision:
                AcceleratorState._reset_state(reset_partial_state=PartialState().device.type != target.type)
        owned = not AcceleratorState._shared_state
    else:
        # accelerate runs several CPU processes (gloo) only when told cpu=True; a launcher
        # started them, so without a GPU that is what was asked for
        cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        mixed_precision = resolve_mixed_precision(mixed_precision, torch.device("cpu" if cpu else "cuda"))
    # engines may leave parameters unused in a configuration (e.g. an ablated input)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu, kwargs_handlers=[ddp]), owned


def release_accelerator() -> None:
    """Clear accelerate's process-wide state (single process only)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


class _LossModule(nn.Module):
    """Routes an engine's loss function through ``forward`` so DDP and autocast see it."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[Any], Any]) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, batch: Any) -> Any:
        return self._loss_fn(batch)


@dataclass
class TrainState:
    """Loop counters; saved in every checkpoint."""

    epoch: int = 0                 # epochs finished
    step_in_epoch: int = 0         # batches done in the current epoch
    global_step: int = 0           # optimizer steps
    total_steps: int | None = None  # optimizer steps the schedule plans for
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0
    elapsed: float = 0.0           # training seconds, resumed runs included
    cpu_elapsed: float = 0.0       # CPU seconds of the main process, resumed runs included
    stopped: str | None = None     # "completed", "early_stop", "max_minutes" or "max_cpu_minutes"
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    running: dict[str, Any] = field(default_factory=dict)  # partial sums of the current epoch


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: one record per epoch and the outcome."""

    history: list[dict[str, Any]]
    best_epoch: int | None
    best_metric: float | None
    stopped: str
    global_step: int
    train_seconds: float
    resumed_from: str | None = None
    train_cpu_seconds: float = 0.0


# ---- checkpoint files ----------------------------------------------------------------------
def _save_tensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """safetensors file of a state dict; tensors sharing storage (tied weights) are stored once."""
    from safetensors.torch import save_file

    seen: dict[tuple, str] = {}
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for k, v in tensors.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
        if key in seen:
            aliases[k] = seen[key]
        else:
            seen[key] = k
            out[k] = v.detach().to("cpu").clone().contiguous()
    save_file(out, str(path), metadata={"aliases": json.dumps(aliases)})
    _fsync(path)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
        for k in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            out[k] = f.get_tensor(k)
    for k, src in aliases.items():
        out[k] = out[src]
    return out


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(str(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(obj: Any, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _rng_snapshot(rngs: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """States of the engine's generators (``rngs``) as (tensors, JSON)."""
    tensors, js = {}, {}
    for name, g in rngs.items():
        if isinstance(g, torch.Generator):
            tensors[name] = g.get_state()
        elif isinstance(g, np.random.Generator):
            js[name] = g.bit_generator.state
        else:
            raise TypeError(f"rng '{name}': expected a torch.Generator or numpy Generator, got {type(g)}")
    return tensors, js


def _rng_restore(rngs: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], js: Mapping[str, Any]) -> None:
    for name, g in rngs.items():
        if isinstance(g, torch.Generator):
            g.set_state(tensors[name])
        else:
            g.bit_generator.state = js[name]


def _global_rng_snapshot() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = s
    npst = np.random.get_state()
    js = {"numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
          "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}
    return tensors, js


def _global_rng_restore(tensors: Mapping[str, torch.Tensor], js: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda_")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
    n = js["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = js["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def checkpoint_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first (incomplete ones skipped)."""
    root = Path(output_dir) / "checkpoints"
    found = []
    if root.is_dir():
        for d in root.iterdir():
            m = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", d.name)
            if m and d.is_dir():
                if _complete(d):
                    found.append((int(m.group(1)), d))
                else:
                    warnings.warn(f"skipping incomplete checkpoint {d}", stacklevel=2)
    return [d for _, d in sorted(found)]


def _complete(d: Path) -> bool:
    if not all((d / f).is_file() for f in _CHECKPOINT_FILES):
        return False
    try:
        state = json.loads((d / _STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and "state" in state and "world_size" in state


def last_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint, or None."""
    dirs = checkpoint_dirs(output_dir)
    return dirs[-1] if dirs else None


# ---- the loop ------------------------------------------------------------------------------
class Trainer:
    """One early-stopping training loop for an ``nn.Module`` (see the module docstring).

    ``params`` defaults to the module's parameters that require gradients. ``device``: where a
    single-process run trains (default: where the module is); ignored under a multi-process
    launch. ``on_epoch_end(record)`` is called on the main process after each epoch's record is
    complete; ``on_step_end(trainer)`` after every batch (tests use it to interrupt a run).
    ``optimizer``: the optimizer class (default :class:`torch.optim.AdamW`), built with the
    config's ``lr`` and ``weight_decay``.
    """

    def __init__(self, config: TrainingConfig, model: nn.Module, *,
                 batches: Callable[[int], Sequence[Any]],
                 loss: Callable[[Any], Any],
                 evaluate: Callable[[], Mapping[str, float]] | None = None,
                 params: Sequence[nn.Parameter] | None = None,
                 rngs: Mapping[str, Any] | None = None,
                 device: torch.device | str | None = None,
                 name: str = "model", progress: bool = True,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
                 on_step_end: Callable[[Trainer], None] | None = None,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        self.config = config
        self.model = model
        self.batches_fn, self.loss_fn, self.evaluate_fn = batches, loss, evaluate
        self.params = list(params) if params is not None else None
        self.rngs = dict(rngs or {})
        self.device = device
        self.name, self.progress = name, progress
        self.on_epoch_end, self.on_step_end = on_epoch_end, on_step_end
        self.state = TrainState()
        self.accelerator = None
        self.epoch_info: dict[str, Any] = {}  # engine notes for the current epoch's record ("info")
        self.optimizer: torch.optim.Optimizer | None = None
        # optimizer class called as ``cls(params, lr=..., weight_decay=...)``; AdamW unless an engine
        # needs another (e.g. :class:`textrec.optim.LazyAdamW` for sparse ID-table gradients)
        self.optimizer_cls = optimizer or torch.optim.AdamW
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None

    # -- helpers ---------------------------------------------------------------------------
    def _shard(self, batches: Sequence[Any]) -> Sequence[Any]:
        """This process's share of the batches; every process gets the same count (wrapping
        around to the first batches, as accelerate's ``even_batches`` does) so DDP never waits."""
        acc = self.accelerator
        n, world = len(batches), acc.num_processes
        if world == 1 or n == 0:
            return batches
        padded = list(batches) + [batches[i % n] for i in range(-n % world)]
        return padded[acc.process_index::world]

    def _improved(self, m: float) -> bool:
        if m != m:  # NaN never improves
            return False
        best = self.state.best_metric
        if best is None:
            return True
        d = self.config.min_delta
        return m > best + d if self.config.higher_is_better else m < best - d

    def _build_scheduler(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        cfg, total = self.config, self.state.total_steps
        warmup = max(cfg.warmup_steps, math.ceil(cfg.warmup_ratio * total))
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, warmup, total, cfg.schedule, cfg.min_lr_ratio))

    # -- checkpoints -----------------------------------------------------------------------
    def _save_checkpoint(self, opt, sched, best_state, epoch_rngs) -> None:
        acc, cfg = self.accelerator, self.config
        root = Path(cfg.output_dir) / "checkpoints"
        name = f"{CHECKPOINT_PREFIX}{self.state.global_step:09d}"
        tmp, final = root / f".tmp-{name}", root / name
        if acc.is_main_process:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        acc.wait_for_everyone()
        r = acc.process_index
        g_t, g_js = _global_rng_snapshot()
        e_t, e_js = _rng_snapshot(self.rngs)
        _save_tensors({**{f"global.{k}": v for k, v in g_t.items()}, **{f"engine.{k}": v for k, v in e_t.items()},
                       **{f"epoch.{k}": v for k, v in epoch_rngs[0].items()}}, tmp / f"rng-{r}.safetensors")
        # the epoch's partial sums are this process's own (the main process's are in the state file)
        _write_json({"global": g_js, "engine": e_js, "epoch": epoch_rngs[1], "running": self.state.running},
                    tmp / f"rng-{r}.json")
        acc.wait_for_everyone()
        if acc.is_main_process:
            _save_tensors(self.model.state_dict(), tmp / "model.safetensors")
            if best_state is not None:
                _save_tensors(best_state, tmp / "best.safetensors")
            torch.save(opt.state_dict(), tmp / "optimizer.pt")
            _fsync(tmp / "optimizer.pt")
            scaler = getattr(acc, "scaler", None)
            _write_json({"scheduler": sched.state_dict() if sched is not None else None,
                         "scaler": scaler.state_dict() if scaler is not None else None}, tmp / "scheduler.json")
            # the state file is written last: its presence marks the checkpoint complete
            _write_json({"state": asdict(self.state), "config": _jsonable(asdict(cfg)),
                         "world_size": acc.num_processes, "has_best": best_state is not None},
                        tmp / _STATE_FILE)
            if final.exists():  # the same step saved again (the final checkpoint of a run)
                trash = root / f".old-{name}"
                shutil.rmtree(trash, ignore_errors=True)
                os.replace(final, trash)
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
            _fsync(root)
            for old in checkpoint_dirs(cfg.output_dir)[:-cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _find_resume(self) -> Path | None:
        cfg = self.config
        if cfg.resume is False:
            return None
        if cfg.resume in (True, "auto"):
            ck = last_checkpoint(cfg.output_dir)
            if ck is None and cfg.resume is True:
                raise FileNotFoundError(f"resume: no complete checkpoint under {Path(cfg.output_dir) / 'checkpoints'}")
            return ck
        ck = Path(cfg.resume)
        if not _complete(ck):
            raise FileNotFoundError(f"resume: {ck} is not a complete checkpoint (missing files or {_STATE_FILE})")
        return ck

    def _load_checkpoint(self, ck: Path, opt) -> tuple[dict | None, dict]:
        """Restore model, optimizer and counters; returns (best_state, rng payload)."""
        acc, cfg = self.accelerator, self.config
        meta = json.loads((ck / _STATE_FILE).read_text(encoding="utf-8"))
        saved = meta["config"]
        for key in ("batch_size", "seed", "grad_accumulation"):
            if saved.get(key) != getattr(cfg, key):
                raise ValueError(f"resume from {ck}: {key}={saved.get(key)} there, {getattr(cfg, key)} now; "
                                 "a resumed run must keep it")
        if meta["world_size"] != acc.num_processes:
            raise ValueError(f"resume from {ck}: saved by {meta['world_size']} process(es), "
                             f"resumed with {acc.num_processes}")
        self.state = TrainState(**meta["state"])
        self.model.load_state_dict(_load_tensors(ck / "model.safetensors"))
        # loaded on the CPU; the optimizer moves each state to its parameter's device
        opt.load_state_dict(torch.load(ck / "optimizer.pt", map_location="cpu", weights_only=True))
        best = _load_tensors(ck / "best.safetensors") if meta.get("has_best") else None
        r = acc.process_index
        rng_t = _load_tensors(ck / f"rng-{r}.safetensors")
        rng_js = json.loads((ck / f"rng-{r}.json").read_text(encoding="utf-8"))
        self.state.running = rng_js.get("running", self.state.running)
        return best, {"tensors": rng_t, "json": rng_js,
                      "scheduler": json.loads((ck / "scheduler.json").read_text(encoding="utf-8"))}

    # -- fit -------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train in place (best weights restored at the end); one record per epoch."""
        cfg = self.config
        dev = self.device
        if dev is None:
            dev = next(self.model.parameters()).device
        acc, owned = make_accelerator(cfg.mixed_precision, dev)
        self.accelerator = acc
        try:
            return self._fit(acc)
        finally:
            if owned:
                release_accelerator()

    def _fit(self, acc) -> TrainResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.model.to(acc.device)
        params = self.params if self.params is not None else [p for p in self.model.parameters() if p.requires_grad]
        opt = self.optimizer_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        wrapped, opt = acc.prepare(_LossModule(self.model, self.loss_fn), opt)
        self.optimizer = opt
        self.state = TrainState()
        best_state: dict[str, torch.Tensor] | None = None
        ck = self._find_resume()
        rng_payload = None
        sched = None
        if ck is not None:
            best_state, rng_payload = self._load_checkpoint(ck, opt)
            saved = rng_payload["scheduler"]
            if self.state.total_steps is not None:
                sched = self._build_scheduler(opt)  # (building it sets the lr of step 0 ...)
                sched.load_state_dict(saved["scheduler"])
                for group, lr in zip(opt.param_groups, sched.get_last_lr()):  # (... put the saved one back)
                    group["lr"] = lr
            if saved.get("scaler") is not None and getattr(acc, "scaler", None) is not None:
                acc.scaler.load_state_dict(saved["scaler"])
            if acc.is_main_process and self.progress:
                tqdm.write(f"{self.name}: resuming from {ck} (epoch {self.state.epoch + 1}, "
                           f"step {self.state.global_step})", file=sys.stderr)
        st = self.state
        t_run = time.perf_counter()
        elapsed0 = st.elapsed
        cap = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
        cpu_run, cpu_elapsed0 = time.process_time(), st.cpu_elapsed
        cpu_cap = cfg.max_cpu_minutes * 60 if cfg.max_cpu_minutes is not None else None

        def elapsed() -> float:
            return elapsed0 + time.perf_counter() - t_run

        def cpu_elapsed() -> float:
            return cpu_elapsed0 + time.process_time() - cpu_run

        def over_budget() -> str | None:
            if cap is not None and elapsed() > cap:
                return "max_minutes"
            if cpu_cap is not None and cpu_elapsed() > cpu_cap:
                return "max_cpu_minutes"
            return None

        bar = None
        run_steps = 0
        epoch_rngs = _rng_snapshot(self.rngs)
        try:
            while not st.finished and st.epoch < cfg.epochs:
                epoch = st.epoch
                if rng_payload is not None:  # replay this epoch's shuffling, then continue the RNGs
                    t, js = rng_payload["tensors"], rng_payload["json"]
                    _rng_restore(self.rngs, {k[6:]: v for k, v in t.items() if k.startswith("epoch.")}, js["epoch"])
                epoch_rngs = _rng_snapshot(self.rngs)
                self.epoch_info = {}
                batches = self._shard(self.batches_fn(epoch))
                if rng_payload is not None:
                    _rng_restore(self.rngs, {k[7:]: v for k, v in t.items() if k.startswith("engine.")}, js["engine"])
                    _global_rng_restore({k[7:]: v for k, v in t.items() if k.startswith("global.")}, js["global"])
                    rng_payload = None
                else:
                    st.step_in_epoch, st.running = 0, {}
                n = len(batches)
                if st.total_steps is None:
                    st.total_steps = max(math.ceil(n / cfg.grad_accumulation) * cfg.epochs, 1)
                    sched = self._build_scheduler(opt)
                self.scheduler = sched
                if bar is None:
                    bar = tqdm(total=n * cfg.epochs, initial=min(epoch * n + st.step_in_epoch, n * cfg.epochs),
                               desc=f"train {self.name}", disable=not (self.progress and acc.is_main_process),
                               dynamic_ncols=True)
                run = st.running
                run.setdefault("loss_sum", 0.0)
                run.setdefault("weight", 0.0)
                run.setdefault("steps", 0)
                run.setdefault("parts", {})
                run.setdefault("train_seconds", 0.0)
                out_of_time = False
                self.model.train()
                t0 = time.perf_counter()
                pending = False
                for i in range(st.step_in_epoch, n):
                    group_start = (i // cfg.grad_accumulation) * cfg.grad_accumulation
                    group_end = min(group_start + cfg.grad_accumulation, n)
                    sync = i + 1 == group_end
                    with contextlib.nullcontext() if sync else acc.no_sync(wrapped):
                        out = wrapped(batches[i])
                        if out is not None:
                            loss, weight, parts = _unpack(out)
                            value = float(loss.detach())
                            if not math.isfinite(value):
                                raise FloatingPointError(f"{self.name}: loss became {value} at epoch {epoch + 1}, "
                                                         f"batch {i}")
                            size = group_end - group_start
                            acc.backward(loss / size if size > 1 else loss)
                            pending = True
                            run["loss_sum"] += value * weight
                            run["weight"] += weight
                            run["steps"] += 1
                            if parts:  # the per-batch mean of the loss is logged beside its parts
                                parts = {"loss": value, **parts}
                            for k, v in parts.items():
                                run["parts"][k] = run["parts"].get(k, 0.0) + v
                    stepped = False
                    if sync and pending:
                        if cfg.grad_clip:
                            acc.clip_grad_norm_(params, cfg.grad_clip)
                        opt.step()
                        if not acc.optimizer_step_was_skipped:
                            sched.step()
                        opt.zero_grad(set_to_none=True)
                        st.global_step += 1
                        pending, stepped = False, True
                    st.step_in_epoch = i + 1
                    run_steps += 1
                    if bar is not None:
                        bar.update(1)
                        if cap is not None:  # honest ETA: the bar ends where the cap will stop it
                            spent = time.perf_counter() - t_run
                            left = cap - elapsed()
                            reach = bar.n + int(run_steps / max(spent, 1e-9) * max(left, 0.0))
                            bar.total = max(bar.n, min(n * cfg.epochs, reach))
                    if stepped and cfg.checkpoint_every and st.global_step % cfg.checkpoint_every == 0:
                        run["train_seconds"] += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        st.elapsed, st.cpu_elapsed = elapsed(), cpu_elapsed()
                        self._save_checkpoint(opt, sched, best_state, epoch_rngs)
                    if self.on_step_end is not None:
                        self.on_step_end(self)
                    if cap is not None or cpu_cap is not None:
                        spent = over_budget()
                        out_of_time = self._agree(spent is not None)
                        if out_of_time:
                            break
                run["train_seconds"] += time.perf_counter() - t0
                loss_sum, weight, steps, parts = self._epoch_totals(run)
                record: dict[str, Any] = {"epoch": epoch + 1, "steps": run["steps"],
                                          "loss": loss_sum / weight if weight else float("nan"),
                                          "parts": {k: v / max(steps, 1) for k, v in parts.items()},
                                          "train_seconds": run["train_seconds"]}
                if self.epoch_info:
                    record["info"] = dict(self.epoch_info)
                if self.evaluate_fn is not None and (
                        (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs or out_of_time):
                    tv = time.perf_counter()
                    metrics = self._evaluate()
                    record["valid"] = metrics
                    record["eval_seconds"] = time.perf_counter() - tv
                    if cfg.metric not in metrics:
                        raise KeyError(f"{self.name}: evaluate() returned {sorted(metrics)}, no '{cfg.metric}' "
                                       "(config.metric)")
                    m = float(metrics[cfg.metric])
                    if self._improved(m):
                        st.best_metric, st.best_epoch, st.bad_evals = m, epoch + 1, 0
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
                    else:
                        st.bad_evals += 1
                record["cpu_seconds"] = cpu_elapsed()  # so far: where a CPU budget went, epoch by epoch
                st.history.append(record)
                st.epoch, st.step_in_epoch, st.running = epoch + 1, 0, {}
                if self.on_epoch_end is not None and acc.is_main_process:
                    self.on_epoch_end(record)
                if bar is not None:
                    post = {"epoch": epoch + 1, "loss": f"{record['loss']:.4f}"}
                    if "valid" in record:
                        post[f"valid_{cfg.metric}"] = f"{record['valid'][cfg.metric]:.4f}"
                    bar.set_postfix(post)
                if out_of_time:
                    st.stopped = "max_cpu_minutes" if over_budget() == "max_cpu_minutes" else "max_minutes"
                    if acc.is_main_process:
                        limit = getattr(cfg, st.stopped)
                        tqdm.write(f"{self.name}: stopped by {st.stopped}={limit} at epoch {epoch + 1} "
                                   f"({st.global_step} optimizer steps)", file=sys.stderr)
                    break
                if self.evaluate_fn is not None and st.bad_evals >= cfg.patience:
                    st.stopped = "early_stop"
                    break
            if st.stopped is None:
                st.stopped = "completed"
            st.elapsed, st.cpu_elapsed = elapsed(), cpu_elapsed()
            if best_state is not None:
                self.model.load_state_dict(best_state)
            if cfg.checkpoint_every and not st.finished:
                st.finished = True
                self._save_checkpoint(opt, sched, best_state, epoch_rngs)
            st.finished = True
        finally:
            if bar is not None:
                bar.close()
            self.model.eval()
        return TrainResult(history=st.history, best_epoch=st.best_epoch, best_metric=st.best_metric,
                           stopped=st.stopped, global_step=st.global_step, train_seconds=st.elapsed,
                           resumed_from=str(ck) if ck is not None else None, train_cpu_seconds=st.cpu_elapsed)

    def _epoch_totals(self, run: dict[str, Any]) -> tuple[float, float, int, dict[str, float]]:
        """(loss sum, weight, batches, part sums) of the epoch over every process."""
        acc = self.accelerator
        keys = list(run["parts"])  # the same order on every process: the same model wrote them
        if acc.num_processes == 1:
            return run["loss_sum"], run["weight"], run["steps"], dict(run["parts"])
        t = torch.tensor([run["loss_sum"], run["weight"], run["steps"]] + [run["parts"][k] for k in keys],
                         dtype=torch.float64, device=acc.device)
        t = acc.reduce(t, reduction="sum").tolist()
        return t[0], t[1], int(t[2]), dict(zip(keys, t[3:]))

    def _agree(self, flag: bool) -> bool:
        """The main process's decision, on every process (wall clocks differ across processes)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return flag
        from accelerate.utils import broadcast_object_list

        return bool(broadcast_object_list([flag])[0])

    def _evaluate(self) -> dict[str, float]:
        acc = self.accelerator
        if acc.num_processes == 1:
            return {k: float(v) for k, v in self.evaluate_fn().items()}
        from accelerate.utils import broadcast_object_list

        metrics = [{k: float(v) for k, v in self.evaluate_fn().items()} if acc.is_main_process else None]
        return broadcast_object_list(metrics)[0]


def _unpack(out: Any) -> tuple[torch.Tensor, float, dict[str, float]]:
    """(loss, weight, logged parts) from what an engine's loss function returned."""
    if isinstance(out, torch.Tensor):
        return out, 1.0, {}
    if isinstance(out, Mapping) and "loss" in out:
        weight = float(out.get("weight", 1.0))
        parts = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                 for k, v in out.items() if k not in ("loss", "weight")}
        return out["loss"], weight, parts
    raise TypeError(f"a loss function must return a tensor or a mapping with 'loss', got {type(out)}")


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in d.items()}


def send_to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch moved to ``device``; everything else unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: send_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(send_to_device(v, device) for v in batch)
    return batch


__all__ = ["TrainingConfig", "Trainer", "TrainState", "TrainResult", "lr_factor", "make_accelerator",
           "release_accelerator", "is_main_process",
           "resolve_mixed_precision", "checkpoint_dirs", "last_checkpoint", "send_to_device"]
