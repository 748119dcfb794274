"""Multi-persona users vs single-vector SASRec on ML-100K: NDCG@10 and intra-list diversity.

PersonaRec is trained with the SASRec recipe and the same reduced budget as the reference
SASRec run (``--max-epochs``, ``--window-stride``); the SASRec numbers and top-10 lists are read
from the collision-free part file of ``eval/toolbox_id_table.py`` when it matches that budget
(so SASRec is not trained twice), else SASRec is trained here. Intra-list diversity (ILD@10)
is the mean pairwise cosine *distance* between the items of a list, with items represented by
their binary training-user vectors (model-independent). A few explained recommendations are
written too.

    python eval/toolbox_persona.py --max-epochs 8 --window-stride 50 --personas 4
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from textrec.io import write_json
from textrec.results import git_commit, machine

OUT = Path("eval/results")


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


def main(argv: list[str] | None = None) -> None:
    """Train PersonaRec (and SASRec unless a matching run exists), compare, write the JSON."""
    from textrec.data.registry import load_dataset
    from textrec.data.splits import make_split
    from textrec.evaluation import run_protocol
    from textrec.models.baselines import interaction_matrix
    from textrec.models.persona import PersonaRec
    from textrec.models.sasrec import SASRec

    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-epochs", type=int, default=8)
    p.add_argument("--window-stride", type=int, default=50)
    p.add_argument("--personas", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_dataset("ml-100k")
    split = make_split(ds, "auto")
    items_by_user = interaction_matrix(split.train, split.n_users, split.n_items).T  # items x users
    overrides = {"window_stride": args.window_stride}
    rows: dict[str, dict] = {}

    ref = OUT / f"toolbox_id_table_ml-100k_collision_free_seed{args.seed}.part.json"
    sasrec = json.loads(ref.read_text()) if ref.is_file() else None
    if sasrec and (sasrec.get("max_epochs") != args.max_epochs or sasrec.get("recipe_overrides") != overrides):
        sasrec = None
    if sasrec is None:
        m = SASRec.from_recipe("sasrec", seed=args.seed, max_epochs=args.max_epochs, **overrides)
        res = run_protocol(m, split, progress=True)
        sasrec = {"valid": res.valid.to_dict(), "test": res.test.to_dict(), "test_top10": res.test.topk[:, :10].tolist(),
                  "best_epoch": m.best_epoch, "train_seconds": res.train_seconds, "source": "trained here"}
    else:
        sasrec["source"] = str(ref)
    top = np.asarray(sasrec["test_top10"])
    rows["SASRec"] = {"test": sasrec["test"], "valid": sasrec["valid"], "best_epoch": sasrec["best_epoch"],
                      "ild@10": round(float(intra_list_diversity(top, items_by_user).mean()), 6),
                      "source": sasrec["source"]}

    t0 = time.perf_counter()
    model = PersonaRec.from_recipe("sasrec", seed=args.seed, max_epochs=args.max_epochs,
                                   n_personas=args.personas, temperature=args.temperature, **overrides)
    res = run_protocol(model, split, progress=True)
    rows["PersonaRec"] = {"test": res.test.to_dict(), "valid": res.valid.to_dict(), "best_epoch": model.best_epoch,
                          "ild@10": round(float(intra_list_diversity(res.test.topk[:, :10], items_by_user).mean()), 6),
                          "n_personas": args.personas, "temperature": args.temperature,
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
    result = {
        "benchmark": "toolbox_persona", "dataset": ds.name, "split": split.describe(), "seed": args.seed,
        "n_seeds": 1, "budget": {"max_epochs": args.max_epochs, "window_stride": args.window_stride,
                                 "note": "reduced budget (shared CPU); both models get the same"},
        "protocol": "fit on train, early stop on valid, test with valid appended; full ranking, history masked",
        "diversity": "ILD@10 = mean pairwise cosine distance of the listed items' binary training-user vectors",
        "models": rows,
        "ndcg@10_relative_to_sasrec": round(pr["test"]["ndcg@10"] / s["test"]["ndcg@10"] - 1.0, 4),
        "ild@10_relative_to_sasrec": round(pr["ild@10"] / s["ild@10"] - 1.0, 4),
        "target": "within 5% of SASRec's NDCG@10 with higher intra-list diversity",
        "examples": examples,
        "command": "python eval/toolbox_persona.py " + " ".join(shlex.quote(a) for a in argv),
        "date": date.today().isoformat(), "machine": machine(), "git_commit": git_commit(),
    }
    write_json(OUT / "toolbox_persona_ml-100k.json", result)
    print(json.dumps({k: result[k] for k in ("ndcg@10_relative_to_sasrec", "ild@10_relative_to_sasrec")}),
          {n: (r["test"]["ndcg@10"], r["ild@10"]) for n, r in rows.items()})


if __name__ == "__main__":
    main()
