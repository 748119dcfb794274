"""``textrec bench toolbox-persona``: multi-persona users vs single-vector SASRec on ML-100K, NDCG@10
and intra-list diversity.

PersonaRec is trained with the SASRec recipe and the same reduced budget as the reference
SASRec run (``--max-epochs``, ``--window-stride``); the SASRec numbers and top-10 lists are read
from the collision-free part file of ``textrec bench toolbox-id-table sasrec`` when it matches
that budget (so SASRec is not trained twice), else SASRec is trained here. Intra-list diversity
(ILD@10) is the mean pairwise cosine *distance* between the items of a list, with items
represented by their binary training-user vectors (model-independent). A few explained
recommendations are written too.

    textrec bench toolbox-persona --max-epochs 8 --window-stride 50 --personas 4 --publish
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from textrec.options import add_seed_option, add_threads_option, positive_float, positive_int, progress
from textrec.results import add_output_options, published_part, writer_from_args


def intra_list_diversity(topk: np.ndarray, item_vectors) -> np.ndarray:
    """Per list, the mean pairwise cosine distance of its items (rows of ``item_vectors``)."""
    import scipy.sparse as sp

    v = sp.csr_matrix(item_vectors, dtype=np.float64)
    norms = np.sqrt(np.asarray(v.multiply(v).sum(1)).ravel())
    v = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ v
    out = np.zeros(len(topk))
    for r, items in enumerate(topk):
        items = items[items >= 0]
        if len(items) < 2:
            continue
        sim = (v[items] @ v[items].T).toarray()
        n = len(items)
        out[r] = 1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1))
    return out


def benchmark_persona(max_epochs: int, window_stride: int, personas: int, temperature: float, seed: int,
                      show: bool = True) -> dict:
    """Train PersonaRec (and SASRec unless a matching published run exists); the comparison."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol
    from textrec.models.baselines import interaction_matrix
    from textrec.models.persona import PersonaRec
    from textrec.models.sasrec import SASRec

    ds = load_dataset("ml-100k")
    split = make_split(ds, "auto")
    items_by_user = interaction_matrix(split.train, split.n_users, split.n_items).T  # items x users
    overrides = {"window_stride": window_stride}
    rows: dict[str, dict] = {}

    ref_name = f"toolbox_id_table_ml-100k_collision_free_seed{seed}.part.json"
    sasrec, ref = published_part("toolbox_id_table_ml-100k", ref_name)
    if sasrec and (sasrec.get("max_epochs") != max_epochs or sasrec.get("recipe_overrides") != overrides):
        sasrec = None
    if sasrec is None:
        m = SASRec.from_recipe("sasrec", seed=seed, max_epochs=max_epochs, **overrides)
        res = run_protocol(m, split, progress=show)
        sasrec = {"valid": res.valid.to_dict(), "test": res.test.to_dict(), "test_top10": res.test.topk[:, :10].tolist(),
                  "best_epoch": m.best_epoch, "train_seconds": res.train_seconds, "source": "trained here"}
    else:
        sasrec["source"] = str(ref)
    top = np.asarray(sasrec["test_top10"])
    rows["SASRec"] = {"test": sasrec["test"], "valid": sasrec["valid"], "best_epoch": sasrec["best_epoch"],
                      "ild@10": round(float(intra_list_diversity(top, items_by_user).mean()), 6),
                      "source": sasrec["source"]}

    t0 = time.perf_counter()
    model = PersonaRec.from_recipe("sasrec", seed=seed, max_epochs=max_epochs, n_personas=personas,
                                   temperature=temperature, **overrides)
    res = run_protocol(model, split, progress=show)
    rows["PersonaRec"] = {"test": res.test.to_dict(), "valid": res.valid.to_dict(), "best_epoch": model.best_epoch,
                          "ild@10": round(float(intra_list_diversity(res.test.topk[:, :10], items_by_user).mean()), 6),
                          "n_personas": personas, "temperature": temperature,
                          "train_seconds": round(res.train_seconds, 1), "wall_seconds": round(time.perf_counter() - t0, 1)}
    # how many distinct personas a top-10 list serves, and a few explained lists
    served, examples = [], []
    titles = ds.items.sort_values("item")["title"].tolist()
    for i in range(len(split.test)):
        recs = model.recommend_with_personas(split.test.history(i), k=10)
        served.append(len({r["persona"] for r in recs}))
        if i < 3:
            examples.append({"user": str(ds.user_ids[split.test.users[i]]), "recommendations": [
                {"title": titles[r["item"]], "persona": r["persona"], "persona_weight": r["persona_weight"],
                 "because_of": [titles[b["item"]] for b in r["because_of"]]} for r in recs[:5]]})
    rows["PersonaRec"]["mean_personas_served_per_top10"] = round(float(np.mean(served)), 3)
    s, pr = rows["SASRec"], rows["PersonaRec"]
    return {
        "benchmark": "toolbox_persona", "dataset": ds.name, "split": split.describe(), "seed": seed,
        "n_seeds": 1, "budget": {"max_epochs": max_epochs, "window_stride": window_stride,
                                 "note": "reduced budget (shared CPU); both models get the same"},
        "protocol": "fit on train, early stop on valid, test with valid appended; full ranking, history masked",
        "diversity": "ILD@10 = mean pairwise cosine distance of the listed items' binary training-user vectors",
        "models": rows,
        "ndcg@10_relative_to_sasrec": round(pr["test"]["ndcg@10"] / s["test"]["ndcg@10"] - 1.0, 4),
        "ild@10_relative_to_sasrec": round(pr["ild@10"] / s["ild@10"] - 1.0, 4),
        "target": "within 5% of SASRec's NDCG@10 with higher intra-list diversity",
        "examples": examples,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``textrec bench toolbox-persona``."""
    p.add_argument("--max-epochs", type=positive_int, default=8)
    p.add_argument("--window-stride", type=positive_int, default=50)
    p.add_argument("--personas", type=positive_int, default=4)
    p.add_argument("--temperature", type=positive_float, default=1.0)
    add_seed_option(p)
    add_threads_option(p)
    add_output_options(p, "toolbox-persona")


def run(args: argparse.Namespace) -> int:
    """Write ``toolbox_persona_ml-100k.json``."""
    with writer_from_args(args, "toolbox-persona") as writer:
        result = benchmark_persona(args.max_epochs, args.window_stride, args.personas, args.temperature, args.seed,
                                   progress(args))
        writer.write_json("toolbox_persona_ml-100k.json", result)
    print(json.dumps({k: result[k] for k in ("ndcg@10_relative_to_sasrec", "ild@10_relative_to_sasrec")}),
          {n: (r["test"]["ndcg@10"], r["ild@10"]) for n, r in result["models"].items()})
    return 0
