"""``textrec bench query-probe``: do queries that retrieve *different* things give a per-user choice
that can be predicted?

    textrec bench query-probe --dataset scientific --threads 1 --out eval/results/query_candidates
    textrec bench query-probe --dataset games --threads 1 --out eval/results/query_candidates

The round-2 probe (its rows are this benchmark's ``cv_title_chooser_*``) showed that the five
title heuristics are near-copies of each other and that the titles do not predict which one wins. This probe
widens the candidates to queries about different items of the history and about its category / brand, scores
every candidate of every training task under the training reward retriever, and asks whether a chooser fitted
on cheap features of the history (5-fold cross-validated over tasks, never on test) beats the best single
candidate. No LLM: if a regressor that sees the features directly cannot choose, a 135M policy will not either.

Candidates (all cut to the budget, the history is the newest 5 items as in the benchmark):

* the round-2 five: ``raw_history``, ``last_title`` (= ``item1``), ``last_two_titles``, ``all_titles``, ``keywords``;
* ``item2`` .. ``item5``: the title of the k-th newest item;
* ``pair12``, ``pair13``: half the budget from each of two items' titles;
* Scientific only (its item text carries a category path and a brand): ``cat1`` (the newest item's category,
  the leaf end of the path), ``catdom`` (the history's most frequent category, newest on ties) and
  ``branddom`` (the most frequent brand, then the newest title).

Features of (task, candidate), all computable from the prompt's titles, except the ``+retrieval`` set:

* text: candidate one-hot, history length, query words, the share of the query's terms found in the *other*
  shown titles (a repeated interest), the number of other shown items that share the source item's category
  (Scientific), the source item's catalog popularity rank is *not* used (it is not in the prompt);
* retrieval: how well the query finds the user's other shown items (mean 1/(1+rank) over them, the source
  item excluded) and the top-1 / top-10 score margin of the query.

Each reward block also repeats the round-2 question on the round-2 five (``cv_title_chooser_*``): a ridge
chooser per heuristic on the newest title's shape (length, digits, capitals, the previous title's length,
history length), then with that title's TF-IDF.

Writes ``candidate_probe_<dataset>.json`` through the one result writer (with the run's command, date,
machine, CPU seconds and peak memory).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np

from textrec.options import add_threads_option, positive_int
from textrec.query.catalog import Catalog
from textrec.query.heuristics import heuristic_query
from textrec.query.retrieval import tokenize
from textrec.results import add_output_options, writer_from_args

ROUND2 = ["raw_history", "last_title", "last_two_titles", "all_titles", "keywords"]
ITEMS = ["item2", "item3", "item4", "item5", "pair12", "pair13"]
META = ["cat1", "catdom", "branddom"]


def meta_fields(doc: str) -> tuple[str, str]:
    """(category path, brand) of a Scientific document ``title. category. brand.`` ('' where absent)."""
    parts = [p.strip() for p in doc.strip().rstrip(".").split(". ")]
    if len(parts) < 3:
        return "", ""
    cat = parts[-2].replace("Industrial & Scientific", "").strip()
    return cat, parts[-1].strip()


def cut(text: str, n: int) -> str:
    """The first ``n`` words of ``text``."""
    return " ".join(text.split()[:n])


def leaf(cat: str, n: int) -> str:
    """The leaf end of a category path (the path is one string of names, so keep its last words)."""
    return " ".join(cat.split()[-n:])


def candidates(task, cat: Catalog, meta, budget: int) -> dict[str, tuple[str, list[int]]]:
    """Each candidate's query and the positions (0 = newest) of the shown items it is built from."""
    ctx = task.context
    n = len(ctx)
    out = {k: (heuristic_query(k, ctx, budget), list(range(n))) for k in ROUND2}
    out["last_title"] = (out["last_title"][0], [0])
    out["last_two_titles"] = (out["last_two_titles"][0], [0, 1])
    for k in range(2, 6):
        out[f"item{k}"] = (cut(ctx[-k], budget), [k - 1]) if n >= k else ("", [])
    half = budget // 2
    for name, j in (("pair12", 2), ("pair13", 3)):
        out[name] = ((cut(ctx[-1], half) + " " + cut(ctx[-j], budget - half)).strip(), [0, j - 1]) if n >= j \
            else ("", [])
    if meta is not None:
        items = [int(i) for i in task.history[-n:]][::-1]  # newest first, aligned with positions
        cats = [meta[i][0] for i in items]
        brands = [meta[i][1] for i in items]
        out["cat1"] = (leaf(cats[0], budget), [0]) if cats and cats[0] else ("", [])
        cc = Counter(c for c in cats if c)
        if cc:
            top = max(cc.values())
            dom = next(c for c in cats if c and cc[c] == top)
            out["catdom"] = (leaf(dom, budget), [p for p, c in enumerate(cats) if c == dom])
        else:
            out["catdom"] = ("", [])
        bc = Counter(b for b in brands if b)
        if bc:
            top = max(bc.values())
            dom = next(b for b in brands if b and bc[b] == top)
            out["branddom"] = (cut(dom + " " + ctx[-1], budget), [p for p, b in enumerate(brands) if b == dom])
        else:
            out["branddom"] = ("", [])
    return out


def shape_features(context: list[str], last_is_last_two: bool) -> list[float]:
    """The newest title's length, digit share and capital share, the previous title's length, the history
    length and whether the one- and two-title queries are the same at the budget (the round-2 features)."""
    lt = context[-1].split() if context else []
    prev = context[-2].split() if len(context) > 1 else []
    return [len(lt), sum(any(c.isdigit() for c in w) for w in lt) / max(1, len(lt)), len(prev), len(context),
            float(last_is_last_two), sum(w.isupper() for w in lt) / max(1, len(lt))]


def title_choosers(tasks, cands, rew: np.ndarray, folds) -> dict[str, float]:
    """The round-2 question on the round-2 five: mean reward of a per-kind ridge chooser on the shape
    features, then also on the newest title's TF-IDF (fitted on the training folds only)."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    last = [t.context[-1] if t.context else "" for t in tasks]
    x = np.array([shape_features(t.context, c["last_title"][0] == c["last_two_titles"][0])
                  for t, c in zip(tasks, cands)])
    out = {}
    for name, use_text in (("shape_features", False), ("shape_features+last_title_tfidf", True)):
        got = np.zeros(len(tasks))
        for tr, te in folds:
            m_tr, m_te = [csr_matrix(x[tr])], [csr_matrix(x[te])]
            if use_text:
                v = TfidfVectorizer(min_df=3).fit([last[i] for i in tr])
                m_tr.append(v.transform([last[i] for i in tr]))
                m_te.append(v.transform([last[i] for i in te]))
            pred = np.stack([Ridge(alpha=1.0).fit(hstack(m_tr), rew[tr, j]).predict(hstack(m_te))
                             for j in range(rew.shape[1])], 1)
            got[te] = rew[te, pred.argmax(1)]
        out[f"cv_title_chooser_{name}"] = round(float(got.mean()), 4)
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Options of ``textrec bench query-probe``."""
    ap.add_argument("--dataset", default="scientific")
    ap.add_argument("--n-tasks", type=positive_int, default=3000, help="seeded training tasks (seed 1)")
    ap.add_argument("--budget", type=positive_int, default=8, help="query budget in words")
    ap.add_argument("--retriever", default="hybrid", choices=["bm25", "dense", "hybrid"],
                    help="the retriever whose full-ranking NDCG is the reward")
    add_threads_option(ap)
    add_output_options(ap, "query-probe")


def run(args: argparse.Namespace) -> int:
    """Score every candidate of every task, fit the cross-validated choosers, write the JSON."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    from textrec.data.registry import load_dataset
    from textrec.query.retrieval import retriever_for_dataset
    from textrec.query.rewards import reward_metric
    from textrec.query.tasks import make_tasks, subsample
    from textrec.text.encoder import default_cache_dir

    writer = writer_from_args(args, "query-probe")
    ds = load_dataset(args.dataset)
    cat = Catalog.from_dataset(ds, verbose=False)
    meta = [meta_fields(d) for d in cat.documents] if args.dataset == "scientific" else None
    ret = retriever_for_dataset(ds, args.retriever, cache_dir=default_cache_dir().parent / "query_index", catalog=cat,
                                progress=False)
    tasks = subsample(make_tasks(ds, "held_out_users", "train", cat, max_history=5, held_out_users_frac=0.2),
                      args.n_tasks, 1)
    cands = [candidates(t, cat, meta, args.budget) for t in tasks]
    kinds = list(cands[0])
    n, m = len(tasks), len(kinds)
    r_full, r_10 = np.zeros((n, m)), np.zeros((n, m))
    valid = np.zeros((n, m), dtype=bool)
    f_ret = np.zeros((n, m, 2))
    f_txt = np.zeros((n, m, 4))
    for i, (t, c) in enumerate(zip(tasks, cands)):
        queries = [c[k][0] for k in kinds]
        ok = np.array([bool(q.strip()) for q in queries])
        valid[i] = ok
        s = ret.ranking_scores([q if q.strip() else "x" for q in queries]).numpy()
        shown = [int(x) for x in t.history[-len(t.context):]][::-1]
        hist_s = s.copy()
        hist_s[:, np.asarray(t.history, dtype=np.int64)] = -np.inf  # the target is ranked with history masked
        tgt = hist_s[:, t.target][:, None]
        rank = (hist_s > tgt).sum(1)
        rank = np.where(np.isfinite(tgt[:, 0]), rank, 10**9)
        r_full[i] = np.where(ok, reward_metric(np.minimum(rank, 10**6), None), 0.0)
        r_10[i] = np.where(ok, reward_metric(np.minimum(rank, 10**6), 10), 0.0)
        titles_terms = [set(tokenize(x)) for x in t.context[::-1]]
        for j, k in enumerate(kinds):
            q, src = c[k]
            others = [p for p in range(len(shown)) if p not in src] or [p for p in range(len(shown))]
            # how well the query finds the user's other shown items (their ranks among all items)
            row = s[j]
            rr = [1.0 / (1.0 + float((row > row[shown[p]]).sum())) for p in others]
            top = np.sort(row[np.isfinite(row)])[::-1]
            f_ret[i, j] = [np.mean(rr) if rr else 0.0, (top[0] - top[min(9, len(top) - 1)]) if len(top) else 0.0]
            qt = set(tokenize(q))
            other_terms = set().union(*(titles_terms[p] for p in others)) if others else set()
            same_cat = 0.0
            if meta is not None and src:
                c0 = meta[shown[src[0]]][0]
                same_cat = sum(meta[shown[p]][0] == c0 for p in others) / max(1, len(others))
            f_txt[i, j] = [len(t.context), len(q.split()), len(qt & other_terms) / max(1, len(qt)), same_cat]
    out = {"benchmark": "query_candidate_probe", "dataset": args.dataset, "retriever": args.retriever, "budget_words": args.budget,
           "n_tasks": n, "tasks": "seeded training tasks (seed 1) of the training users (20% held out)",
           "candidates": kinds, "share_empty": dict(zip(kinds, (1 - valid.mean(0)).round(3).tolist()))}
    onehot = np.broadcast_to(np.eye(m), (n, m, m))
    folds = list(KFold(5, shuffle=True, random_state=0).split(np.arange(n)))
    for rname, rew in (("ndcg_all", r_full), ("ndcg_10", r_10)):
        means = rew.mean(0)
        best = int(means.argmax())
        block = {"mean": dict(zip(kinds, means.round(4).tolist())), "best_single": kinds[best],
                 "best_single_mean": round(float(means[best]), 4),
                 "oracle_round2": round(float(rew[:, [kinds.index(k) for k in ROUND2]].max(1).mean()), 4),
                 "oracle_all": round(float(rew.max(1).mean()), 4)}
        for fname, feats in (("text", np.concatenate([onehot, f_txt], 2)),
                             ("text+retrieval", np.concatenate([onehot, f_txt, f_ret], 2))):
            for mname in ("ridge_per_kind", "boosting_pooled"):
                got = np.zeros(n)
                for tr, te in folds:
                    if mname == "ridge_per_kind":
                        x_tr = feats[tr].reshape(len(tr), -1)
                        x_te = feats[te].reshape(len(te), -1)
                        pred = np.stack([Ridge(alpha=1.0).fit(x_tr, rew[tr, j]).predict(x_te) for j in range(m)], 1)
                    else:
                        reg = HistGradientBoostingRegressor(max_iter=150, learning_rate=0.05, max_leaf_nodes=15,
                                                            random_state=0)
                        reg.fit(feats[tr].reshape(-1, feats.shape[2]), rew[tr].reshape(-1))
                        pred = reg.predict(feats[te].reshape(-1, feats.shape[2])).reshape(len(te), m)
                    pred = np.where(valid[te], pred, -np.inf)
                    got[te] = rew[te, pred.argmax(1)]
                diff = got - rew[:, best]
                boots = np.random.default_rng(0).choice(n, size=(2000, n))
                lo, hi = np.percentile(diff[boots].mean(1), [2.5, 97.5])
                block[f"cv_{mname}_{fname}"] = {"mean": round(float(got.mean()), 4),
                                                "minus_best_single": round(float(diff.mean()), 4),
                                                "ci95": [round(float(lo), 4), round(float(hi), 4)]}
        block.update(title_choosers(tasks, cands, rew[:, [kinds.index(k) for k in ROUND2]], folds))
        out[rname] = block
    writer.write_json(f"candidate_probe_{args.dataset}.json", out)
    print(json.dumps(out, indent=1))
    writer.finish()
    return 0
