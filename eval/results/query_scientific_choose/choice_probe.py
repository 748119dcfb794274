"""Is the per-user best heuristic predictable from the titles? Training tasks only, 5-fold CV, no LLM.

Run from the checkout root: ``python eval/results/query_scientific_choose/choice_probe.py`` (one thread).
"""

import json
import time
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from textrec.data.registry import load_dataset
from textrec.query.catalog import Catalog
from textrec.query.heuristics import heuristic_queries
from textrec.query.retrieval import retriever_for_dataset
from textrec.query.rewards import reward_metric
from textrec.query.tasks import make_tasks, subsample

KINDS = ["raw_history", "last_title", "last_two_titles", "all_titles", "keywords"]


def shape_features(task, queries) -> list[float]:
    """Length, digit share and capital share of the newest title, the previous title's length, history length."""
    lt = task.context[-1].split() if task.context else []
    prev = task.context[-2].split() if len(task.context) > 1 else []
    return [len(lt), sum(any(c.isdigit() for c in w) for w in lt) / max(1, len(lt)), len(prev), len(task.context),
            float(queries["last_title"] == queries["last_two_titles"]), sum(w.isupper() for w in lt) / max(1, len(lt))]


def main() -> None:
    cpu0 = time.process_time()
    ds = load_dataset("scientific")
    cat = Catalog.from_dataset(ds, verbose=False)
    cache = Path.home() / ".cache" / "textrec" / "query_index"
    hybrid = retriever_for_dataset(ds, "hybrid", cache_dir=cache, catalog=cat, progress=False)
    tasks = subsample(make_tasks(ds, "held_out_users", "train", cat, max_history=5, held_out_users_frac=0.2), 3000, 1)
    qs = [heuristic_queries(t.context, 8, KINDS) for t in tasks]
    rewards = np.zeros((len(tasks), len(KINDS)))
    for j, k in enumerate(KINDS):
        ranks = hybrid.target_ranks([q[k] for q in qs], [t.target for t in tasks], [t.history for t in tasks])
        rewards[:, j] = reward_metric(np.asarray(ranks), None, "ndcg")
    last = [t.context[-1] if t.context else "" for t in tasks]
    x = np.array([shape_features(t, q) for t, q in zip(tasks, qs)])
    out = {"n_tasks": len(tasks), "mean_ndcg_all": dict(zip(KINDS, rewards.mean(0).round(4).tolist())),
           "oracle": round(float(rewards.max(1).mean()), 4)}
    for name, use_text in (("shape_features", False), ("shape_features+last_title_tfidf", True)):
        got = np.zeros(len(tasks))
        for tr, te in KFold(5, shuffle=True, random_state=0).split(x):
            m_tr, m_te = [csr_matrix(x[tr])], [csr_matrix(x[te])]
            if use_text:
                v = TfidfVectorizer(min_df=3).fit([last[i] for i in tr])
                m_tr.append(v.transform([last[i] for i in tr]))
                m_te.append(v.transform([last[i] for i in te]))
            # regress each kind's reward, send the kind with the highest prediction (expected-reward chooser)
            pred = np.stack([Ridge(alpha=1.0).fit(hstack(m_tr), rewards[tr, j]).predict(hstack(m_te))
                             for j in range(len(KINDS))], 1)
            got[te] = rewards[te, pred.argmax(1)]
        out[f"cv_chooser_{name}"] = round(float(got.mean()), 4)
    out["best_constant"] = KINDS[int(rewards.mean(0).argmax())]
    out["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
