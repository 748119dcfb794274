"""VQ-Rec from scratch vs the core baselines' best on one dataset (first, partial VQ-Rec benchmark).

python eval/vqrec_bench.py --dataset ml-100k --threads 1 [--id-residual] [--epochs N]
Writes eval/results/vqrec_<dataset>[_idres].json. Backbone/trainer = the SASRec recipe, so the
only difference from ID-SASRec is how an item is represented (sum of its text-code embeddings).
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

import torch

from textrec.bench import git_commit, machine, peak_rss_mb
from textrec.data.registry import load_dataset
from textrec.data.splits import make_split
from textrec.evaluation import run_protocol
from textrec.io import write_json
from textrec.models.vqrec import VQRec
from textrec.recipes import load_recipe


def main() -> None:
    """Parse arguments, train VQ-Rec from scratch, write the result JSON."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--subvectors", type=int, default=32)
    ap.add_argument("--centroids", type=int, default=256)
    ap.add_argument("--id-residual", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default="eval/results")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ds = load_dataset(args.dataset)
    split = make_split(ds, "auto")
    recipe = load_recipe("sasrec")
    model = VQRec(backbone=recipe["backbone"], trainer={**recipe["trainer"], "seed": args.seed},
                  n_subvectors=args.subvectors, n_centroids=args.centroids, id_residual=args.id_residual,
                  max_epochs=args.epochs, seed=args.seed)
    res = run_protocol(model, split)
    name = f"vqrec_{ds.name}" + ("_idres" if args.id_residual else "")
    out = {"benchmark": "vqrec_from_scratch", "dataset": ds.name, "split": split.describe(),
           "model": res.to_dict(), "config": model.get_config(), "codes": model.code_report,
           "training_history": model.history, "seed": args.seed, "git_commit": git_commit(),
           "date": date.today().isoformat(), "machine": machine(),
           "wall_seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}
    write_json(Path(args.out_dir) / f"{name}.json", out)
    t = res.test.metrics
    print(f"{name}: test hr@10 {t['hr@10']:.4f} ndcg@10 {t['ndcg@10']:.4f} mrr@10 {t['mrr@10']:.4f} "
          f"valid ndcg@10 {res.valid.metrics['ndcg@10']:.4f} train {res.train_seconds:.0f}s")


if __name__ == "__main__":
    main()
