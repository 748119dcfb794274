"""Rec-R1 engine end to end on a toy catalog with a tiny random Llama: GRPO steps, resume, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_llama

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from textrec.query.catalog import Catalog  # noqa: E402
from textrec.query.grpo_config import QueryGRPOConfig, load_grpo_config  # noqa: E402
from textrec.query.retrieval import BM25Retriever  # noqa: E402
from textrec.query.tasks import QueryTask, load_template, prompt_messages, render_prompt  # noqa: E402

DOCS = [
    "Red apple juice. Drinks Juice. FruitCo.",
    "Green apple pie. Bakery Pies. BakeHouse.",
    "Orange juice fresh squeezed. Drinks Juice. FruitCo.",
    "Chocolate cake with cherries. Bakery Cakes. BakeHouse.",
    "Digital caliper stainless steel. Measuring Tools. ToolMax.",
    "Laboratory glass beaker set. Lab Supplies Glassware. LabPro.",
    "Apple cider vinegar. Pantry Vinegar. FruitCo.",
    "Soldering iron kit with stand. Tools Electronics. ToolMax.",
]
PROMPT_WORDS = ("system user assistant you write short search queries for a recommendation engine "
                "these products oldest first one query few keywords titles genres brands product types "
                "that would find the next item this wants reply with only bought").split()


def _tiny_policy(folder):
    """A 2-layer random Llama with a word-level tokenizer over the toy vocabulary."""
    words = {w for d in DOCS for w in d.lower().replace(".", " ").split()} | set(PROMPT_WORDS)
    return tiny_llama(folder, words | {str(i) for i in range(10)})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    return _tiny_policy(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def toy():
    catalog = Catalog.from_texts(DOCS, name="toy")
    rng = np.random.default_rng(0)
    tasks = []
    for u in range(6):
        hist = rng.choice(8, size=3, replace=False)
        target = int([i for i in range(8) if i not in hist][u % 5])
        tasks.append(QueryTask(user=u, history=hist, target=target, context=[catalog.titles[i] for i in hist]))
    return catalog, BM25Retriever(catalog), tasks


def _config(tiny, **kw):
    base = dict(model=str(tiny), lora_r=4, lora_top_layers=1, beta=0.001, lora_alpha=8, lora_targets=["q_proj", "v_proj"], num_generations=4,
                max_completion_length=6, max_steps=3, save_steps=2, learning_rate=1e-3, max_history=3,
                eval_max_new_tokens=6, max_words=24)
    base.update(kw)
    return QueryGRPOConfig(**base)


def test_recipes_load_and_reject_unknown_keys():
    cpu = load_grpo_config("recr1_cpu")
    full = load_grpo_config("recr1")
    assert cpu.num_generations >= 2 and full.num_generations >= cpu.num_generations
    assert load_grpo_config("recr1_cpu", max_steps=7).max_steps == 7
    with pytest.raises(ValueError, match="unknown"):
        load_grpo_config({"group_size": 4})
    with pytest.raises(ValueError, match="group size"):
        QueryGRPOConfig(num_generations=1)


def test_prompt_rendering_without_chat_template(tiny, toy):
    from transformers import AutoTokenizer

    _, _, tasks = toy
    tok = AutoTokenizer.from_pretrained(tiny)
    text = render_prompt(prompt_messages(tasks[0], load_template(), "toy"), tok)
    assert text.endswith("assistant:") and tasks[0].context[0] in text


def test_tiny_grpo_end_to_end_resume_and_writer_round_trip(tiny, toy, tmp_path):
    from textrec.query.grpo_trainer import CURVE_JSON, CURVE_PNG, QueryGRPOTrainer
    from textrec.query.policy import QueryWriter

    _, bm25, tasks = toy
    out = tmp_path / "run"
    tr = QueryGRPOTrainer(_config(tiny), {"bm25": bm25}, tasks, out, dataset_name="toy")
    curve = tr.train()
    assert curve["step"] == [1, 2, 3]
    assert all(r is not None and np.isfinite(r) for r in curve["reward"])
    # Both reward parts are logged: retrieval NDCG in [0, 1], format in [-penalty, 0].
    nd = curve["rewards/ndcg@100_bm25/mean"]
    fm = curve["rewards/format/mean"]
    assert all(0.0 <= x <= 1.0 for x in nd) and all(-1.0 <= x <= 0.0 for x in fm)
    assert (out / CURVE_PNG).stat().st_size > 1000
    assert json.loads((out / CURVE_JSON).read_text())["step"] == [1, 2, 3]
    assert (out / "checkpoint-2").is_dir()

    # Resume from checkpoint-2 with a longer budget: the curve continues, not restarts.
    tr2 = QueryGRPOTrainer(_config(tiny, max_steps=4), {"bm25": bm25}, tasks, out, dataset_name="toy")
    curve2 = tr2.train(resume=True)
    assert tr2.trainer.state.global_step == 4
    assert curve2["step"] == [1, 2, 3, 4]

    # The trained writer round-trips through save_pretrained / from_pretrained.
    w = tr2.writer()
    before = w.generate(tasks[:3], progress=False)
    tr2.save_pretrained(tmp_path / "writer")
    assert (tmp_path / "writer" / "adapter" / "adapter_model.safetensors").is_file()
    again = QueryWriter.from_pretrained(tmp_path / "writer", merge=False)
    assert again.generate(tasks[:3], progress=False) == before
    assert again.template_id == "query-plain" and again.max_history == 3


def test_missing_reward_retriever_is_a_clear_error(tiny, toy, tmp_path):
    from textrec.query.grpo_trainer import QueryGRPOTrainer

    _, bm25, tasks = toy
    with pytest.raises(ValueError, match="dense"):
        QueryGRPOTrainer(_config(tiny, reward_retrievers=["dense"]), {"bm25": bm25}, tasks, tmp_path)


def test_full_model_writer_round_trip_and_bad_folder(tiny, toy, tmp_path):
    from textrec.query.policy import QueryWriter, load_policy

    _, _, tasks = toy
    model, tok = load_policy(str(tiny))
    w = QueryWriter(model, tok, max_history=3, max_new_tokens=5, base_model=str(tiny))
    out = w.generate(tasks[:2], progress=False)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    w.save_pretrained(tmp_path / "w")
    assert (tmp_path / "w" / "model" / "model.safetensors").is_file()
    assert QueryWriter.from_pretrained(tmp_path / "w").generate(tasks[:2], progress=False) == out
    with pytest.raises(FileNotFoundError, match="querywriter.json"):
        QueryWriter.from_pretrained(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "querywriter.json").write_text("{}")
    with pytest.raises(ValueError, match="unreadable"):
        QueryWriter.from_pretrained(tmp_path / "bad")


def test_cli_generate_with_a_tiny_policy(tiny, tmp_path, capsys):
    from textrec.cli import main
    from textrec.data.registry import load_dataset

    try:
        ds = load_dataset("ml-100k")
    except (FileNotFoundError, ModuleNotFoundError) as e:
        pytest.skip(f"ML-100K not available offline: {e}")
    user = str(ds.user_ids[0])
    rc = main(["query", "generate", "--dataset", "ml-100k", "--user", user, "--model", str(tiny),
               "--index-dir", str(tmp_path), "--k", "3", "--max-history", "3"])
    out = capsys.readouterr().out
    assert rc == 0 and "true next item" in out and "completion:" in out
    assert main(["query", "generate", "--dataset", "ml-100k", "--user", "no-such-user", "--model", str(tiny),
                 "--index-dir", str(tmp_path)]) == 2  # a clear error, not a traceback


def test_sft_targets_pick_the_best_heuristic_query(toy):
    from textrec.query.heuristics import term_weights
    from textrec.query.sft import CANDIDATES, QuerySFTConfig, candidate_queries, sft_targets

    catalog, bm25, tasks = toy
    weights = term_weights(catalog)
    c = candidate_queries(tasks[0], max_words=4, weights=weights)
    assert set(c) == set(CANDIDATES) and all(len(q.split()) <= 4 for q in c.values())
    assert c["last_title"] == " ".join(tasks[0].context[-1].split()[:4])
    targets, report = sft_targets(tasks, bm25, QuerySFTConfig(max_query_words=8, reward_k=100))
    assert len(targets) == len(tasks) and all(targets)
    assert report["reward_retriever"] == "bm25" and report["n_targets"] == sum(len(t) for t in targets)
    # every chosen query reaches the best score of any heuristic for its task (ties: all kept)
    from textrec.query.rewards import RetrievalReward

    rr = RetrievalReward(bm25, k=100)
    for t, qs in zip(tasks, targets):
        cands = candidate_queries(t, 8, weights=weights)
        scores = rr(None, list(cands.values()), target=[t.target] * len(cands), history=[t.history] * len(cands))
        best = max(scores)
        got = rr(None, qs, target=[t.target] * len(qs), history=[t.history] * len(qs))
        if best > 0:
            assert all(g == pytest.approx(best) for g in got)
            tied = {q for q, s in zip(cands.values(), scores) if s == pytest.approx(best) and q}
            assert set(qs) == tied


def test_sft_warm_start_lowers_loss_and_returns_a_plain_model(tiny, toy, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from textrec.query.policy import prepare_tokenizer
    from textrec.query.sft import QuerySFTConfig, sft_warm_start

    _, bm25, tasks = toy
    tok = AutoTokenizer.from_pretrained(tiny)
    prepare_tokenizer(tok)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    cfg = QuerySFTConfig(steps=8, batch_size=3, learning_rate=5e-3, lora_top_layers=1, max_query_words=6,
                         reward_k=100)
    merged, report = sft_warm_start(model, tok, load_template(), tasks, bm25, cfg, tmp_path / "sft",
                                    dataset_name="toy", progress=False)
    assert report["steps"] == 8 and report["loss_last"] < report["loss_first"]
    assert not any("lora" in n for n, _ in merged.named_parameters())  # merged: GRPO can add its own
    fid = report["fidelity"]  # SFT saw every toy task, so the check reads them (64 asked, 6 exist)
    assert fid["n"] == len(tasks) and 0.0 <= fid["exact"] <= fid["same_start"] <= 1.0


def test_copy_fidelity_counts_exact_copies_older_lines_and_digits(tiny, monkeypatch):
    from transformers import AutoTokenizer

    from textrec.query.policy import QueryWriter
    from textrec.query.sft import copy_fidelity

    written = [" red apple juice", " red apple juice fresh", " green apple pie", " 2023 01 01", " orange juice"]
    monkeypatch.setattr(QueryWriter, "generate", lambda self, ts, **kw: written[: len(ts)])
    tok = AutoTokenizer.from_pretrained(tiny)
    t = QueryTask(user=0, history=np.array([1, 2]), target=3, context=["green apple pie", "red apple juice"])
    fid = copy_fidelity(None, tok, load_template("query-bare"), [t] * 5, [["red apple juice"]] * 5,
                        max_new_tokens=24)
    # exact copy; right title with another end; an older line; a date; something else
    assert fid["n"] == 5 and fid["exact"] == 0.2 and fid["same_start"] == 0.4
    assert fid["older_line"] == 0.2 and fid["starts_with_digit"] == 0.2
    assert [e["written"] for e in fid["examples"]] == written[1:]  # every inexact one


def test_all_equal_rewards_are_skipped_and_reported(tiny, toy, tmp_path, capsys):
    from textrec.query.grpo_trainer import QueryGRPOTrainer

    catalog, bm25, tasks = toy
    # The target sits in the masked history: no query can retrieve it, every reward is 0.
    hopeless = [QueryTask(user=t.user, history=np.append(t.history, t.target), target=t.target, context=t.context)
                for t in tasks]
    tr = QueryGRPOTrainer(_config(tiny, beta=0.0, format_weight=0.0, max_steps=2, save_steps=10),
                          {"bm25": bm25}, hopeless, tmp_path / "run", dataset_name="toy")
    tr.train()
    s = tr.summary()
    assert s["skipped_batches"] == 2 and s["kept_completions"] == 0
    assert s["informative_group_share"] == 0.0
    assert tr.verdict is not None and "nothing was learned" in tr.verdict
    err = capsys.readouterr().err
    assert "step 1/2 | mean reward 0.0000 | informative groups 0%" in err
    assert "{'loss'" not in err and "'reward':" not in err  # no raw trainer dicts


def test_informative_groups_train_and_say_so(tiny, toy, tmp_path):
    from textrec.query.grpo_trainer import QueryGRPOTrainer

    _, bm25, tasks = toy
    tr = QueryGRPOTrainer(_config(tiny, beta=0.0, max_steps=2, save_steps=10, num_generations=8),
                          {"bm25": bm25}, tasks, tmp_path / "run", dataset_name="toy", verbose=False)
    tr.train()
    s = tr.summary()
    assert s["steps"] == 2 and s["kept_completions"] + s["dropped_completions"] == 16
    if s["informative_group_share"] > 0:
        assert s["kept_completions"] > 0 and tr.verdict is None
    cache = s["reward_cache"]["ndcg@100_bm25"]
    assert cache["hits"] + cache["misses"] > 0


def test_dropping_zero_advantage_completions_keeps_the_gradient(tiny, toy, tmp_path):
    from trl import GRPOTrainer

    from textrec.query.grpo_trainer import QueryGRPOTrainer

    _, bm25, tasks = toy
    tr = QueryGRPOTrainer(_config(tiny, beta=0.0, max_steps=1, lora_dropout=0.0), {"bm25": bm25}, tasks, tmp_path / "run",
                          dataset_name="toy", verbose=False)
    t = tr.trainer
    t.current_gradient_accumulation_steps = 1  # set by the training loop, which this test skips
    model = t.model
    model.train()
    g = torch.Generator().manual_seed(0)
    n, p, c = 6, 5, 4
    inputs = {"prompt_ids": torch.randint(3, 20, (n, p), generator=g), "prompt_mask": torch.ones(n, p, dtype=torch.long),
              "completion_ids": torch.randint(3, 20, (n, c), generator=g),
              "completion_mask": torch.ones(n, c, dtype=torch.long),
              "advantages": torch.tensor([0.0, 1.0, 0.0, -1.0, 0.5, 0.0]),
              "num_items_in_batch": torch.tensor(float(n * c))}

    def grads(fn):
        model.zero_grad()
        fn(t, model, dict(inputs)).backward()
        return {k: v.grad.clone() for k, v in model.named_parameters() if v.grad is not None}

    ours = grads(lambda tr_, m, x: type(t).compute_loss(tr_, m, x))
    t.plain_logps = False  # TRL's own log-prob path, for reference
    trl = grads(lambda tr_, m, x: GRPOTrainer.compute_loss(tr_, m, x))
    t.plain_logps = True
    assert ours.keys() == trl.keys() and ours
    for k in ours:
        torch.testing.assert_close(ours[k], trl[k], rtol=1e-4, atol=1e-7)
    assert t.dropped_completions == 3 and t.kept_completions == 3
    # One prompt for the whole group: computed once, shared, and still the same gradient.
    inputs["prompt_ids"] = inputs["prompt_ids"][:1].repeat(n, 1)
    shared = grads(lambda tr_, m, x: type(t).compute_loss(tr_, m, x))
    assert t.shared_prompt_batches >= 1
    t.plain_logps = False
    trl = grads(lambda tr_, m, x: GRPOTrainer.compute_loss(tr_, m, x))
    t.plain_logps = True
    for k in shared:
        torch.testing.assert_close(shared[k], trl[k], rtol=1e-4, atol=1e-7)
    inputs["advantages"] = torch.zeros(n)
    loss = type(t).compute_loss(t, model, dict(inputs))
    assert float(loss) == 0.0 and t.skipped_batches == 1


def test_resume_passes_over_an_incomplete_checkpoint(tmp_path):
    from textrec.query.grpo_trainer import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "missing") is None
    for n, complete in ((4, True), (8, True), (12, False)):  # step 12 was interrupted mid-write
        d = tmp_path / f"checkpoint-{n}"
        d.mkdir()
        if complete:
            (d / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-8"


def test_grpo_can_start_from_a_finished_sft_writer(tiny, toy, tmp_path):
    from textrec.query.training import TRAINING_INFO, train_writers

    _, bm25, tasks = toy
    cfg = dict(beta=0.0, max_steps=1, save_steps=10, sft_steps=2, sft_batch_size=3, sft_max_query_words=6,
               sft_fidelity_tasks=2, held_out_users_frac=0.2)
    first = train_writers(_config(tiny, **cfg), {"bm25": bm25}, tasks, tmp_path / "a", "toy", progress=False)
    assert first["sft"]["fidelity"]["n"] == 2
    sft_dir = tmp_path / "a" / "sft" / "writer"
    # a second GRPO run on the SFT writer of the first: no SFT of its own, the writer's base is that folder
    second = train_writers(_config(tiny, **{**cfg, "sft_from": str(sft_dir)}), {"bm25": bm25}, tasks,
                           tmp_path / "b", "toy", progress=False)
    assert "sft" not in second and not (tmp_path / "b" / "sft").exists()
    written = json.loads((tmp_path / "b" / "final" / "querywriter.json").read_text())
    assert written["base_model"] == str((sft_dir / "model").resolve())
    info = json.loads((tmp_path / "b" / "final" / TRAINING_INFO).read_text())
    assert info["config"]["sft_from"] == str(sft_dir) and info["held_out_users_frac"] == 0.2
    with pytest.raises(ValueError, match="held-out users must be the same"):
        train_writers(_config(tiny, **{**cfg, "sft_from": str(sft_dir), "held_out_users_frac": 0.0}),
                      {"bm25": bm25}, tasks, tmp_path / "c", "toy", progress=False)
    with pytest.raises(FileNotFoundError, match="not a finished SFT writer"):
        train_writers(_config(tiny, **{**cfg, "sft_from": str(tmp_path)}), {"bm25": bm25}, tasks,
                      tmp_path / "d", "toy", progress=False)
