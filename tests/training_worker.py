"""A tiny SASRec run for the training-loop tests: run directly or under ``accelerate launch``.

``python tests/training_worker.py OUT.json OUTPUT_DIR [--resume [CHECKPOINT]] [--checkpoint-every N]
[--keep K] [--epochs E]``
trains on a planted-sequence dataset and (main process only) writes the history, the valid/test
metrics and a checksum of the weights to OUT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
import torch

from textrec.data.dataset import RecDataset
from textrec.data.splits import leave_one_out
from textrec.evaluation import run_protocol
from textrec.models.sasrec import SASRec

TINY = dict(hidden=16, layers=1, heads=2, ff=32, dropout=0.2, attn_dropout=0.2, max_len=8,
            batch_size=16, lr=5e-3, patience=100, eval_every=1)


def planted(n_users: int = 48, n_items: int = 20, length: int = 10, seed: int = 0) -> RecDataset:
    """Every user walks the catalog in order from a random start: next item = last + 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = rng.integers(n_items)
        rows += [(f"u{u}", f"i{(start + t) % n_items}", float(t)) for t in range(length)]
    return RecDataset.from_frames("planted", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def weights_checksum(model: SASRec) -> float:
    """Sum of every weight (float64): equal runs give equal sums."""
    return float(sum(v.double().sum() for v in model.module.state_dict().values()))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("output_dir")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--checkpoint-every", type=int, default=None)
    ap.add_argument("--resume", nargs="?", const="auto", default=False, help="'auto' or a checkpoint folder")
    ap.add_argument("--keep", type=int, default=2, help="checkpoints kept")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = SASRec(**TINY, epochs=args.epochs, output_dir=args.output_dir,
                   checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep, resume=args.resume)
    res = run_protocol(model, leave_one_out(planted()), ks=(10,), progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        out = {"history": [{k: v for k, v in h.items() if "seconds" not in k} for h in model.history],
               "valid": res.valid.metrics, "test": res.test.metrics, "checksum": weights_checksum(model),
               "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1:])
