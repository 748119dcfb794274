"""Can the P5 model and loop learn item-to-item transitions at all? A planted-pattern check.

python eval/p5_planted_check.py [collaborative|random|semantic...] [epochs] [--publish]

3,000 synthetic users walk a 600-item catalog where the next item is perm[last] with
probability 0.8 (else uniform), 9 events each; the last one is held out. The same P5 model
('mini' preset) and training loop as `textrec bench p5` train on all positions; the held-out
event of 300 users is scored each epoch (trie-constrained beams, full catalog, history
masked). An oracle reaches HR@10 ~0.8, popularity ~0.02. Writes p5_planted_<scheme>.json to a
new runs/p5_planted-<time>/ folder (eval/results/ with --publish).
"""

import sys

import numpy as np

from textrec.data.splits import EvalSet
from textrec.indexing import build_index
from textrec.options import set_threads
from textrec.p5.model import P5Config, P5Model
from textrec.p5.recommender import tokenizer_corpus
from textrec.p5.serializer import P5Serializer, SerializerConfig, TrainData
from textrec.p5.trainer import P5TrainConfig, train_p5
from textrec.prompts import load_templates
from textrec.results import ResultWriter

publish = "--publish" in sys.argv
argv = [a for a in sys.argv[1:] if a != "--publish"]
set_threads(1)
n_items, n_users, L = 600, 3000, 8
rng = np.random.default_rng(0)
perm = rng.permutation(n_items)
seqs = []
for _ in range(n_users):
    s = [int(rng.integers(n_items))]
    for _step in range(L):
        s.append(int(perm[s[-1]]) if rng.random() < 0.8 else int(rng.integers(n_items)))
    seqs.append(np.array(s))
train = [s[:-1] for s in seqs]
scheme = argv[0] if argv else "collaborative"
epochs = int(argv[1]) if len(argv) > 1 else 3
index = build_index(scheme, train, n_items, seed=0, **({"n_clusters": 16, "leaf_size": 16} if scheme == "collaborative" else {}))
ser = P5Serializer(index, None, SerializerConfig(max_history=10, max_history_titles=0, positions_per_user=None),
                   templates={"sequential": [t for t in load_templates("p5/sequential") if t.id in ("seq-1", "seq-3")]})
data = TrainData(train, n_items)
model = P5Model.build(P5Config(preset="mini", vocab_size=1000), index, tokenizer_corpus(ser, data, None))
valid = EvalSet.from_lists(list(range(300)), [s[:-1] for s in seqs[:300]], [np.array([s[-1]]) for s in seqs[:300]])
h = train_p5(model, ser, data, valid, P5TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, warmup_steps=100, patience=10, eval_template="seq-1"), progress=False)
for e in h["epochs"]:
    print(scheme, e, flush=True)
with ResultWriter("p5_planted", publish=publish, seed=0) as writer:
    writer.write_json(f"p5_planted_{scheme}.json", {
        "benchmark": "p5_planted_transitions", "dataset": "synthetic (600 items, 3000 users, p=0.8 transitions)",
        "split": "last event held out, 300 users scored", "model": "P5 mini, " + scheme,
        "valid_per_epoch": h["epochs"]})
