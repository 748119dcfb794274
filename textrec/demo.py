"""``textrec demo``: every engine at a small scale on the embedded ML-100K, offline, then serve it.

Steps (each timed): dataset diagnostics and the long-tail plot; Popularity, tuned EASE, SASRec and
TextFusion (the product engine: MiniLM text adaptor + PQ codes + ID residual + EASE, mixed on
valid) under the full-ranking protocol; both sequential models saved as servable artifacts
(catalog with titles, known users with every event); a new movie added to TextFusion from its
text alone and ranked for a user (placed inside that user's warm-score distribution by the
valid-fitted calibration of :mod:`textrec.models.cold_items`); a search query written for that user (Rec-R1's raw-history query by default, the
untrained SmolLM2 policy with ``--query-llm``) and what BM25 retrieves with it; with
``--explain`` and the Amazon Instruments reviews present, a small ERRA explainer beside an
EASE artifact on that data. It ends by printing the one command that serves all of it.

Threads are capped (``--threads``, default 2) for torch and FAISS alike, so the demo's time does
not explode when other jobs share the cores.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

DEMO_TOKEN = "demo-token"
NEW_MOVIE = {"item_id": "new-toy-story-4", "title": "Toy Story 4",
             "description": "2019. Animation, Children's, Comedy. Woody, Buzz and a new toy named Forky."}


class _Clock:
    """Prints each step with its wall time and keeps them for the result JSON."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.steps: dict[str, float] = {}
        self._start = self.t0

    def step(self, name: str) -> None:
        now = time.perf_counter()
        self.steps[name] = round(now - self._start, 1)
        print(f"   [{name}: {now - self._start:.1f}s, total {now - self.t0:.1f}s]", flush=True)
        self._start = now

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 1)


def _cap_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:  # faiss is a dependency; only a broken install lacks it
        pass


def _metrics(res) -> dict[str, Any]:
    keep = ("hr@10", "ndcg@10", "mrr@10")
    return {"valid": {k: round(float(res.valid.metrics[k]), 4) for k in keep},
            "test": {k: round(float(res.test.metrics[k]), 4) for k in keep},
            "train_seconds": round(float(res.train_seconds), 1)}


#: epoch cap of the demo's sequential models: keeps the whole demo within 4 minutes on 2 idle cores
DEMO_EPOCHS = 20


def demo(out_dir: str = "textrec-demo", threads: int = 2, epochs: int = DEMO_EPOCHS, explain: bool = False,
         explain_minutes: float = 3.0, query_llm: bool = False, data_root: str | None = None,
         progress: bool = False) -> dict[str, Any]:
    """Run the demo; returns (and writes to ``<out_dir>/demo.json``) what it measured."""
    from textrec.bench import tune
    from textrec.catalog import UserTable
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.data.stats import dataset_stats, format_stats, plot_long_tail
    from textrec.evaluation import run_protocol
    from textrec.io import write_json
    from textrec.models.baselines import EASE, Popularity
    from textrec.models.fusion import TextFusionRec
    from textrec.models.sasrec import SASRec
    from textrec.results import git_commit, machine
    from textrec.serve.backends import ServedArtifact

    _cap_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = _Clock()

    print("== 1. data: MovieLens-100K (shipped inside the recbole wheel)")
    ds = load_dataset("ml-100k")
    print(format_stats(dataset_stats(ds)))
    print(f"long-tail plot: {plot_long_tail(ds, out / 'ml-100k_long_tail.png')}")
    split = make_split(ds, "auto")
    clock.step("data")

    print("== 2. recommenders under one protocol (full ranking, history masked, test never used to select)")
    rows: dict[str, dict] = {}
    rows["Popularity"] = _metrics(run_protocol(Popularity(), split, progress=progress))
    # a short grid around ML-100K's tuned value: the demo shows the protocol, the bench tunes fully
    params, _ = tune("EASE", split, progress=progress, grid={"lam": [100.0, 250.0, 500.0, 1000.0]})
    rows["EASE"] = {**_metrics(run_protocol(EASE(**params), split, progress=progress)), "params": params}
    clock.step("baselines")
    sasrec = SASRec.from_recipe("sasrec", max_epochs=epochs)
    rows["SASRec"] = _metrics(run_protocol(sasrec, split, progress=progress))
    clock.step("sasrec")
    fusion = TextFusionRec.from_recipe("fusion", max_epochs=epochs)
    rows["TextFusion"] = _metrics(run_protocol(fusion, split, progress=progress))
    rows["TextFusion"]["mix"] = {k: round(v, 4) for k, v in fusion.mix.items()}
    clock.step("textfusion")
    print("| model | test HR@10 | test NDCG@10 | valid NDCG@10 | train s |\n|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['test']['hr@10']:.4f} | {r['test']['ndcg@10']:.4f} | "
              f"{r['valid']['ndcg@10']:.4f} | {r['train_seconds']:.1f} |")
    print(f"(SASRec and TextFusion capped at {epochs} epochs for the demo; the full recipes train longer)")

    print("== 3. saving servable artifacts (model, catalog with titles and text, known users, manifest)")
    folders = {"ml-100k-textfusion": out / "ml-100k-textfusion", "ml-100k-sasrec": out / "ml-100k-sasrec"}
    known = UserTable.from_dataset(ds)  # every event of each user, as `textrec recommend --dataset` reads
    for model, folder in zip((fusion, sasrec), folders.values()):
        model.users = known
        model.save_pretrained(folder)
        print(f"   {folder}")
    clock.step("save")

    print("== 4. a new movie, added to TextFusion from its text alone (no retraining)")
    served = ServedArtifact.load(folders["ml-100k-textfusion"])
    user = _animation_fan(served)
    u, hist = served.history_of(user)
    before = [r.index for r in served.recommend(hist, 10, user=u)]
    new_id = NEW_MOVIE["item_id"]
    if served.has_item(new_id):  # a rerun into the same folder
        idx = served.catalog.index(new_id)
    else:
        idx = served.add_item(new_id, NEW_MOVIE["title"], f"{NEW_MOVIE['title']}. {NEW_MOVIE['description']}")
    rank = served.rank_of(hist, idx, user=u)
    print(f"   added '{NEW_MOVIE['title']}' as item {new_id} (index {idx}); the artifact on disk now has "
          f"{len(served.catalog)} items")
    print(f"   user {user} (recently: {', '.join(served.catalog.title(i) for i in hist[-3:])}) ranks it "
          f"#{rank} of {len(served.catalog) - len(set(hist.tolist()))} unseen items")
    placement = _placement(served.model, hist, idx)
    print(f"   its score {placement['score']:.3f} lies inside this user's warm-item scores "
          f"[{placement['warm_min']:.3f}, {placement['warm_max']:.3f}] (calibrated on valid: a new item is "
          f"placed where warm items are as likely to be the next one)")
    recs = served.recommend(hist, 10, user=u)
    for r in recs:
        mark = "  <- new" if r.index == idx else ""
        print(f"   {r.rank:2d}. {served.catalog.title(r.index)}{mark}")
    clock.step("new item")

    print("== 5. a search query written for the user (Rec-R1 engine)")
    from textrec.serve.backends import QueryEngine

    engine = QueryEngine(served.catalog, llm=query_llm, name="ml-100k")
    query, context, found = engine.query(hist, 5, max_words=8)
    how = ("untrained SmolLM2-135M policy (no GRPO training in the demo)" if query_llm else
           "Rec-R1's raw-history query: the newest 8 words of the recent titles (no LLM; --query-llm for "
           "the untrained SmolLM2 policy)")
    print(f"   written by: {how}\n   query (8-word budget): {query!r}")
    for n, (i, s) in enumerate(found, 1):
        print(f"   {n}. {served.catalog.title(i)} (BM25 {s:.2f})")
    clock.step("query")

    serve_dirs = [str(folders["ml-100k-textfusion"]), str(folders["ml-100k-sasrec"])]
    print("== 6. explanations")
    explained = None
    if explain:
        explained = _explain_demo(out, explain_minutes, data_root, progress)
        if explained:
            serve_dirs += [explained["folder"], f"--explainer instruments-ease={explained['explainer']}"]
        clock.step("explain")
    else:
        print("   ML-100K has no review text, so its artifacts have no explainer (the page hides it).\n"
              "   `textrec demo --explain` adds an Amazon Instruments artifact with a small ERRA explainer "
              "(needs ../shared/data/instruments).")

    command = f"TEXTREC_SERVE_TOKEN={DEMO_TOKEN} textrec serve " + " ".join(serve_dirs)
    result = {"benchmark": "demo", "dataset": ds.name, "split": split.describe(), "models": rows,
              "epochs_cap": epochs, "threads": threads, "new_item": {"id": new_id, "user": user, "rank": rank,
                                                                    "top10_before": before, **placement},
              "query": {"method": engine.method, "text": query}, "explainer": explained,
              "steps_seconds": clock.steps, "wall_seconds": clock.total, "git_commit": git_commit(),
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
              "date": time.strftime("%Y-%m-%d"), "machine": machine(), "serve_command": command}
    write_json(out / "demo.json", result)
    print(f"== done in {clock.total:.0f}s; results in {out / 'demo.json'}")
    print("serve what the demo trained (page at http://127.0.0.1:8000/):")
    print(command)
    return result


def _placement(model, history, item: int) -> dict[str, Any]:
    """The new item's score against the range of this user's unseen warm-item scores."""
    import numpy as np

    s = np.asarray(model.score(np.array([-1]), [history])[0], dtype=np.float64)
    warm = np.asarray(model.counts > 0)
    warm[np.asarray(history, dtype=np.int64)] = False
    lo, hi = float(s[warm].min()), float(s[warm].max())
    return {"score": round(float(s[item]), 4), "warm_min": round(lo, 4), "warm_max": round(hi, 4),
            "inside_warm_range": bool(lo <= s[item] <= hi),
            "calibrated": getattr(model, "calibration", None) is not None}


def _animation_fan(served) -> str:
    """A known user whose last items include an animated film (so the new movie has a fair chance)."""
    users = served.users
    for n, h in enumerate(users.histories):
        recent = " ".join(served.catalog.text[i] for i in h[-10:])
        if len(h) >= 20 and "Animation" in recent:
            return users.ids[n]
    return users.ids[0]


def _explain_demo(out: Path, minutes: float, data_root: str | None, progress: bool) -> dict | None:
    """An EASE artifact on Amazon Instruments and the trusted explainer beside it, explaining what
    EASE recommends to a user.

    The explainer quotes the sentence of the item's own reviews that best fits what the user writes
    about (no decoder to train: a least-squares fit of a few weights, seconds). The Instruments reviews
    carry no item text, so this artifact explains and recommends but cannot add items from text or
    write queries (the page hides both). ``minutes`` is kept for the command line; nothing trains that long."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.explain.pipeline import Explainer, build_data, fit_extractive
    from textrec.models.base import TrainView
    from textrec.models.baselines import EASE
    from textrec.recipes import load_recipe
    from textrec.serve.backends import ServedArtifact

    try:
        ds = load_dataset("instruments", data_root=data_root)
    except FileNotFoundError as e:
        print(f"   skipped: {e}")
        return None
    folder = out / "instruments-ease"
    EASE().fit(TrainView.from_split(make_split(ds, "auto")), progress=progress).save_pretrained(folder)
    recipe = load_recipe("erra")
    # the demo's explainer uses no MiniLM features, so no sentence of the reviews needs encoding
    recipe["data"] = {**recipe["data"], "sentence_embeddings": False}
    recipe["extract"] = {**recipe["extract"], "use_embeddings": False}
    data = build_data(ds, recipe, progress=progress)
    model = fit_extractive(data, recipe)
    explainer_dir = out / "instruments-erra"
    Explainer(data, model).save(explainer_dir, recipe)
    served = ServedArtifact.load(folder, explainer=explainer_dir, data_root=data_root)
    user = str(data.user_ids[data.examples["test"][0].user])
    u, history = served.history_of(user)
    item = served.catalog.ids[served.recommend(history, 1, user=u)[0].index]
    answer = served.explain(user, item)
    print(f"   EASE's top recommendation for user {user}: item {item}")
    print(f"   explanation ({answer['kind']}): {answer['explanation']}\n   aspects: {', '.join(answer['aspects']) or '(none)'}")
    for c in answer["cited"]:
        print(f"   quotes sentence {c['sentence_id']} of a review of this item by {c['review_user']}")
    if answer.get("trust"):
        print(f"   unsupported by the item's reviews: {', '.join(answer['trust']['unsupported']) or 'nothing'}")
    return {"folder": str(folder), "explainer": str(explainer_dir), "fit": model.fit_report, "user": user,
            "item": item, "explanation": answer["explanation"], "kind": answer["kind"]}


def register(sub) -> None:
    """Add ``textrec demo`` to the top-level parser."""
    import argparse

    def positive(kind):
        def parse(text: str):
            v = kind(text)
            if v <= 0:
                raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
            return v
        return parse

    p = sub.add_parser("demo", help="every engine at a small scale on ML-100K, offline; ends with the serve command",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default="textrec-demo")
    p.add_argument("--threads", type=positive(int), default=2, help="torch and FAISS threads (default 2)")
    p.add_argument("--epochs", type=positive(int), default=DEMO_EPOCHS,
                   help=f"epoch cap for SASRec and TextFusion (default {DEMO_EPOCHS})")
    p.add_argument("--query-llm", action="store_true", help="write the query with the untrained SmolLM2 policy")
    p.add_argument("--explain", action="store_true", help="also train a small ERRA explainer on Amazon Instruments")
    p.add_argument("--explain-minutes", type=positive(float), default=3.0)
    p.add_argument("--data-root", help="folder holding the shared datasets (for --explain)")
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    """Run ``textrec demo`` with the parsed options."""
    demo(out_dir=args.out_dir, threads=args.threads, epochs=args.epochs, explain=args.explain,
         explain_minutes=args.explain_minutes, query_llm=args.query_llm, data_root=args.data_root,
         progress=args.progress)
    return 0

