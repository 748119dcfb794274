"""Is the per-user best heuristic predictable from the titles? Training tasks only, 5-fold CV."""
import json, sys, time
from pathlib import Path
import numpy as np
from textrec.data.registry import load_dataset
from textrec.query.catalog import Catalog
from textrec.query.retrieval import retriever_for_dataset
from textrec.query.tasks import make_tasks, subsample
from textrec.query.heuristics import heuristic_queries
from textrec.query.rewards import reward_metric
from textrec.metrics.ranking import MISS

KINDS = ["raw_history", "last_title", "last_two_titles", "all_titles", "keywords"]
cpu0 = time.process_time()
ds = load_dataset("scientific")
cat = Catalog.from_dataset(ds, verbose=False)
cache = Path.home() / ".cache" / "textrec" / "query_index"
hyb = retriever_for_dataset(ds, "hybrid", cache_dir=cache, catalog=cat, progress=False)
tasks = subsample(make_tasks(ds, "held_out_users", "train", cat, max_history=5, held_out_users_frac=0.2), 3000, 1)
qs = [heuristic_queries(t.context, 8, KINDS) for t in tasks]
R = np.zeros((len(tasks), len(KINDS)))
for j, k in enumerate(KINDS):
    ranks = hyb.target_ranks([q[k] for q in qs], [t.target for t in tasks], [t.history for t in tasks])
    R[:, j] = reward_metric(np.asarray(ranks), None, "ndcg")
last = [t.context[-1] if t.context else "" for t in tasks]
def feats(t, q):
    lt = t.context[-1].split() if t.context else []
    prev = t.context[-2].split() if len(t.context) > 1 else []
    return [len(lt), sum(any(c.isdigit() for c in w) for w in lt) / max(1, len(lt)), len(prev), len(t.context),
            float(q["last_title"] == q["last_two_titles"]), sum(w.isupper() for w in lt) / max(1, len(lt))]
X = np.array([feats(t, q) for t, q in zip(tasks, qs)])
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from scipy.sparse import hstack, csr_matrix
best = R.argmax(1)
out = {"n_tasks": len(tasks), "mean_ndcg_all": dict(zip(KINDS, R.mean(0).round(4).tolist())),
       "oracle": round(float(R.max(1).mean()), 4)}
for name, use_text in (("shape_features", False), ("shape_features+last_title_tfidf", True)):
    got = np.zeros(len(tasks))
    for tr, te in KFold(5, shuffle=True, random_state=0).split(X):
        mats_tr, mats_te = [csr_matrix(X[tr])], [csr_matrix(X[te])]
        if use_text:
            v = TfidfVectorizer(min_df=3).fit([last[i] for i in tr])
            mats_tr.append(v.transform([last[i] for i in tr])); mats_te.append(v.transform([last[i] for i in te]))
        # regress each arm's reward and pick the highest predicted (a chooser maximising expected reward)
        from sklearn.linear_model import Ridge
        P = np.stack([Ridge(alpha=1.0).fit(hstack(mats_tr), R[tr, j]).predict(hstack(mats_te)) for j in range(len(KINDS))], 1)
        got[te] = R[te, P.argmax(1)]
    out[f"cv_chooser_{name}"] = round(float(got.mean()), 4)
out["best_constant"] = KINDS[int(R.mean(0).argmax())]
out["cpu_seconds"] = round(time.process_time() - cpu0, 1)
print(json.dumps(out, indent=1))
