"""``textrec bench p5-planted``: can the P5 model and loop learn item-to-item transitions at all?

3,000 synthetic users walk a 600-item catalog where the next item is perm[last] with
probability 0.8 (else uniform), 9 events each; the last one is held out. The same P5 model
('mini' preset) and training loop as ``textrec bench p5`` train on all positions; the held-out
event of 300 users is scored each epoch (trie-constrained beams, full catalog, history
masked). An oracle reaches HR@10 ~0.8, popularity ~0.02. Writes ``p5_planted_<scheme>.json``.

    textrec bench p5-planted --indexing collaborative --epochs 3 --publish
"""

from __future__ import annotations

import argparse

import numpy as np

from textrec.options import add_seed_option, add_threads_option, positive_int, progress
from textrec.results import add_output_options, writer_from_args


def planted_sequences(n_items: int = 600, n_users: int = 3000, length: int = 8, p: float = 0.8,
                      seed: int = 0) -> list[np.ndarray]:
    """Walks where the next item is ``perm[last]`` with probability ``p``, else uniform."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_items)
    seqs = []
    for _ in range(n_users):
        s = [int(rng.integers(n_items))]
        for _step in range(length):
            s.append(int(perm[s[-1]]) if rng.random() < p else int(rng.integers(n_items)))
        seqs.append(np.array(s))
    return seqs


def benchmark_planted(scheme: str, epochs: int, seed: int = 0, show: bool = False) -> dict:
    """Train P5 'mini' on the planted walks; the valid HR/NDCG@10 per epoch."""
    from textrec.data.splits import EvalSet
    from textrec.indexing import build_index
    from textrec.p5.model import P5Config, P5Model
    from textrec.p5.recommender import tokenizer_corpus
    from textrec.p5.serializer import P5Serializer, SerializerConfig, TrainData
    from textrec.p5.trainer import P5TrainConfig, train_p5
    from textrec.prompts import load_templates

    n_items = 600
    seqs = planted_sequences(n_items, seed=seed)
    train = [s[:-1] for s in seqs]
    index = build_index(scheme, train, n_items, seed=seed,
                        **({"n_clusters": 16, "leaf_size": 16} if scheme == "collaborative" else {}))
    ser = P5Serializer(index, None, SerializerConfig(max_history=10, max_history_titles=0, positions_per_user=None),
                       templates={"sequential": [t for t in load_templates("p5/sequential")
                                                 if t.id in ("seq-1", "seq-3")]})
    data = TrainData(train, n_items)
    model = P5Model.build(P5Config(preset="mini", vocab_size=1000), index, tokenizer_corpus(ser, data, None))
    valid = EvalSet.from_lists(list(range(300)), [s[:-1] for s in seqs[:300]], [np.array([s[-1]]) for s in seqs[:300]])
    h = train_p5(model, ser, data, valid, P5TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, warmup_steps=100,
                                                        patience=10, eval_template="seq-1"), progress=show)
    for e in h["epochs"]:
        print(scheme, e, flush=True)
    return {"benchmark": "p5_planted_transitions", "dataset": "synthetic (600 items, 3000 users, p=0.8 transitions)",
            "split": "last event held out, 300 users scored", "model": "P5 mini, " + scheme,
            "valid_per_epoch": h["epochs"]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``textrec bench p5-planted``."""
    from textrec.indexing import SCHEMES

    p.add_argument("--indexing", "--scheme", dest="scheme", default="collaborative", choices=list(SCHEMES))
    p.add_argument("--epochs", type=positive_int, default=3)
    add_seed_option(p)
    add_threads_option(p)
    add_output_options(p, "p5-planted")


def run(args: argparse.Namespace) -> int:
    """Write ``p5_planted_<scheme>.json``."""
    with writer_from_args(args, "p5-planted") as writer:
        writer.write_json(f"p5_planted_{args.scheme}.json",
                          benchmark_planted(args.scheme, args.epochs, args.seed, progress(args)))
    return 0
