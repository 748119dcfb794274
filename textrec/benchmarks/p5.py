"""``textrec bench p5``: every item indexing, constrained beams, side by side with the core baselines.

textrec bench p5 --dataset ml-100k --recipe p5_ml100k --threads 1
    [--indexings random sequential collaborative semantic] [--max-minutes M] [--save-models DIR]
    [--split new_item]   (held-out items: test rows with new vs warm targets reported apart)

Per indexing: build the ids from TRAIN data only, train a T5 from scratch on the sequential
task (seen templates), early-stop on valid NDCG@10, then evaluate valid and test (valid event
appended, no refit) with trie-constrained beams over the full catalogue, consumed items removed
from the trie (= history masked). Also: test metrics per seen and per unseen (held-out, zero-shot)
template, inference users/s, and for the sequential indexing how often the test target's number
is "last history number + 1" (its leak). Writes p5_<dataset>_<indexing>.json as each indexing
finishes, then p5_<dataset>.json and .md with the committed baselines' rows (in the run folder,
or in eval/results with --publish, where indexings of earlier runs of the same recipe are kept).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from textrec.data.splits import Split, make_split
from textrec.evaluation import evaluate
from textrec.indexing import SCHEMES
from textrec.metrics.text import bleu, rmse_mae, rouge, rouge_tokens
from textrec.options import (
    add_dataset_options,
    add_progress_option,
    add_recipe_options,
    add_seed_option,
    add_threads_option,
    load_dataset_from_args,
    positive_float,
    recipe_from_args,
)
from textrec.p5.answers import family_answers, is_bare_answer, rating_answers
from textrec.p5.generation import RatingPredictions, generate_text, predict_ratings
from textrec.p5.model import P5Model
from textrec.p5.pipeline import build_parts, item_titles  # noqa: F401 - item_titles kept for importers
from textrec.p5.rating import RatingRows
from textrec.p5.recommender import P5Recommender
from textrec.p5.serializer import P5Serializer, TrainData
from textrec.p5.throughput import serialization_cost
from textrec.p5.trainer import P5TrainConfig, train_p5
from textrec.recipes import config_from_dict
from textrec.results import add_output_options, published_result, writer_from_args

KS = (5, 10)


def sequential_leak(index, evalset) -> float:
    """Share of rows whose target's number equals the last history item's number + 1."""
    num = np.array([int("".join(t[3:-1] for t in toks)) for toks in index.tokens])
    hits = [num[evalset.targets(i)[0]] == num[evalset.history(i)[-1]] + 1
            for i in range(len(evalset)) if len(evalset.history(i))]
    return float(np.mean(hits)) if hits else float("nan")


def test_pairs(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) of every test row's target event."""
    users = np.asarray(split.test.users)
    items = np.array([split.test.targets(i)[0] for i in range(len(split.test))])
    return users, items


def _target_event_rows(frame: pd.DataFrame, evalset, users: np.ndarray) -> pd.DataFrame:
    """One row of ``frame`` (the last for a repeated user-item pair) per row of ``evalset``, matched on
    the user and the row's target item; NaN where the frame has no such event."""
    items = np.array([evalset.targets(i)[0] for i in range(len(evalset))])
    by_pair = frame.drop_duplicates(["user", "item"], keep="last").set_index(["user", "item"])
    return by_pair.reindex(pd.MultiIndex.from_arrays([users, items]))


def _event_ratings(split: Split, evalset, users: np.ndarray) -> np.ndarray:
    """The star rating of each row's target event of ``evalset`` (NaN where there is none)."""
    return _target_event_rows(split.dataset.interactions, evalset, users)["rating"].to_numpy(dtype=float)


def fit_calibration(pred: np.ndarray, true: np.ndarray, max_slope: float = 2.0) -> tuple[float, float]:
    """``true ~ a + b * pred`` by least squares on valid rows, the slope held to ``[0, max_slope]``.

    The bounds keep the line a calibration: a higher expected rating never maps to a lower one,
    and a model whose expectations barely vary (an undertrained one) cannot have them stretched
    by a huge slope fitted to noise; ``a`` is refitted for the bounded slope. A constant
    prediction gives ``b = 0`` (the valid mean).
    """
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    if not len(true):
        return 0.0, 0.0
    if len(pred) < 2 or np.ptp(pred) == 0:
        return float(np.mean(true)), 0.0
    b = float(np.clip(np.polyfit(pred, true, 1)[0], 0.0, max_slope))
    return float(np.mean(true) - b * np.mean(pred)), b


def valid_rating_rows(ser: P5Serializer, split: Split, data: TrainData, template_id: str | None = None) -> RatingRows:
    """Every valid event with a rating as a rating prompt (the first seen rating template by default),
    for early stopping on valid RMSE; the user's past ratings are their training ratings."""
    assert data.ratings is not None
    prior = ser.rating_prior(data)
    tpl = ser.template("rating", template_id)
    users = np.asarray(split.valid.users)
    true = _event_ratings(split, split.valid, users)
    ok = np.flatnonzero(~np.isnan(true))
    src = [ser.rating_source(tpl, prior, int(users[i]), split.valid.history(int(i)), split.valid.targets(int(i))[0],
                             data.ratings[int(users[i])]) for i in ok]
    return RatingRows(src, true[ok])


def _rating_task(model: P5Model, ser: P5Serializer, split: Split, data: TrainData,
                 rng: np.random.Generator, n_max: int, constrained: bool = False) -> dict:
    """Rating RMSE/MAE on test target events: parsed text, expected stars, and expected stars
    calibrated on valid (``true ~ a + b * expected`` fitted on seeded valid rows, applied to test).

    The prompts carry :class:`RatingPrior` fields; for a test row the user's earlier ratings are
    their training ratings and the valid event's (the valid event is history at test time), for
    a valid row their training ratings. ``prior_baseline`` is what those fields alone predict
    (user mean + item mean - global mean, clipped), the reference that says whether the model adds
    anything to the numbers it is shown. With ``constrained`` the text answer is decoded under the
    rating family's constraint (:mod:`textrec.p5.answers`: always a star), and
    ``unconstrained_answered_with_a_rating`` says how often free decoding would have given one.
    """
    assert data.ratings is not None
    prior = ser.rating_prior(data)
    v_users = np.asarray(split.valid.users)
    v_true = _event_ratings(split, split.valid, v_users)
    valid_rating_of = dict(zip(v_users.tolist(), v_true.tolist()))
    users, items = test_pairs(split)
    true = _event_ratings(split, split.test, users)
    ok = np.flatnonzero(~np.isnan(true))
    ok = np.sort(rng.choice(ok, size=min(n_max, len(ok)), replace=False))
    v_ok = np.flatnonzero(~np.isnan(v_true))
    v_ok = np.sort(rng.choice(v_ok, size=min(n_max, len(v_ok)), replace=False))

    def past(u: int, with_valid: bool) -> np.ndarray:
        r = np.asarray(data.ratings[u], dtype=float)
        v = valid_rating_of.get(u, np.nan)
        return np.append(r, v) if with_valid and not np.isnan(v) else r

    t_past = {int(i): past(int(users[i]), True) for i in ok}
    train_mean = float(np.mean(np.concatenate([r for r in data.ratings if len(r)])))
    bias = np.array([prior.user_mean(t_past[int(i)]) + prior.item_mean(items[i]) - prior.global_mean() for i in ok])
    res = {"n_rows": int(len(ok)), "valid_rows_for_calibration": int(len(v_ok)),
           "train_mean_rating": round(train_mean, 4),
           "train_mean_baseline": rmse_mae(true[ok], np.full(len(ok), train_mean)),
           "prior_baseline": rmse_mae(true[ok], np.clip(bias, 1, 5)),
           "rating_prior_strength": prior.strength, "per_template": {}}
    v_items = np.array([split.valid.targets(int(i))[0] for i in v_ok], dtype=np.int64)

    def source(tpl, evalset, i: int, item: int, past_r: np.ndarray, user: int) -> str:
        return ser.rating_source(tpl, prior, user, evalset.history(i), item, past_r)

    for tpl in ser.templates["rating"]:
        src = [source(tpl, split.test, int(i), int(items[i]), t_past[int(i)], int(users[i])) for i in ok]
        v_src = [source(tpl, split.valid, int(i), int(v_items[j]), past(int(v_users[i]), False), int(v_users[i]))
                 for j, i in enumerate(v_ok)]
        pred = predict_ratings(model, src, fallback=train_mean, mode="text")
        free_share = round(1 - pred.n_fallback / max(len(ok), 1), 4)
        if constrained:
            stars_ = rating_answers(model, src)
            pred = RatingPredictions(stars_, [f"{v:g}" for v in stars_], 0)
        expected = predict_ratings(model, src, mode="expected")
        a, b = fit_calibration(predict_ratings(model, v_src, mode="expected").ratings, v_true[v_ok])
        calibrated = np.clip(a + b * expected.ratings, 1, 5)
        res["per_template"][tpl.id] = {"unseen": tpl.unseen, **rmse_mae(true[ok], pred.ratings),
                                       "n_fallback": pred.n_fallback,
                                       "answered_with_a_rating": round(1 - pred.n_fallback / max(len(ok), 1), 4),
                                       **({"unconstrained_answered_with_a_rating": free_share} if constrained else {}),
                                       "expected_stars": rmse_mae(true[ok], expected.ratings),
                                       "expected_stars_valid_calibrated": {**rmse_mae(true[ok], calibrated),
                                                                           "a": round(a, 4), "b": round(b, 4)},
                                       "examples": [[src[j], pred.texts[j], float(true[ok][j])] for j in range(min(3, len(ok)))]}
    return res


def secondary_tasks(model: P5Model, ser: P5Serializer, split: Split, data: TrainData, ecfg: dict,
                    seed: int) -> dict:
    """Rating RMSE/MAE and explanation BLEU/ROUGE on the test events (families the model was trained on).

    Rating: the test target event's star rating, predicted as text and parsed (unparsable
    outputs get the training mean and are counted; ``answered_with_a_rating`` says how often a
    template's answer was a rating at all) and as expected stars (``expected_stars``); the
    training mean rating is the reference row; see :func:`_rating_task`. Explanation: test target
    events that have a review; the reference is the review text cut as in training
    (``review_words``), the prompt carries the true rating as in P5. Each template is decoded
    greedily (beams and n-gram blocking from the recipe) and, with ``explanation_top_p`` set,
    also by seeded nucleus sampling (under ``sampled``); ``n_distinct`` counts distinct outputs.
    """
    ds = split.dataset
    out: dict = {}
    users, items = test_pairs(split)
    fams = ser.config.families
    rng = np.random.default_rng(seed)
    n_max = int(ecfg.get("secondary_rows", len(users)))
    if "rating" in fams and data.ratings is not None:
        out["rating"] = _rating_task(model, ser, split, data, rng, n_max,
                                     constrained=bool(ecfg.get("rating_constrained", False)))
    if "explanation" in fams and ds.reviews is not None and len(ds.reviews):
        out["explanation"] = _explanation_task(model, ser, split, data, ecfg, rng, n_max, seed)
    return out


def _review_rows(split: Split, evalset, rng: np.random.Generator, n_max: int,
                 review_words: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], int]:
    """Seeded rows of ``evalset`` whose target event has a review: (users, items, stars, reference texts,
    rows without a review); the reference is the review cut to ``review_words`` words, as in training."""
    users = np.asarray(evalset.users)
    items = np.array([evalset.targets(i)[0] for i in range(len(evalset))])
    per_row = _target_event_rows(split.dataset.reviews, evalset, users)  # one review (or NaN) per row
    text = per_row["text"].fillna("").astype(str).to_numpy()
    stars = per_row["rating"].to_numpy() if "rating" in per_row.columns else np.full(len(users), np.nan)
    has = np.flatnonzero([bool(t.strip()) for t in text])
    pick = np.sort(rng.choice(has, size=min(n_max, len(has)), replace=False))
    refs = [" ".join(text[i].split()[:review_words]) for i in pick]
    return users[pick], items[pick], stars[pick], refs, int(len(users) - len(has))


def known_word_share(texts: list[str], vocabulary: set[str]) -> float:
    """Share of the words in ``texts`` that are in ``vocabulary`` (a readability proxy: words the
    training reviews use, against fragments glued from sub-word pieces)."""
    words = [w for t in texts for w in rouge_tokens(t)]
    return round(sum(w in vocabulary for w in words) / max(len(words), 1), 4)


def _text_scores(refs: list[str], hyps: list[str], vocabulary: set[str]) -> dict:
    rt, ht = [rouge_tokens(t) for t in refs], [rouge_tokens(t) for t in hyps]
    return {"bleu1": bleu(rt, ht, 1), "bleu4": bleu(rt, ht, 4),
            **rouge([" ".join(t) for t in rt], [" ".join(t) for t in ht]),
            "distinct_outputs": round(len(set(hyps)) / max(len(hyps), 1), 4), "n_distinct": len(set(hyps)),
            "known_word_share": known_word_share(hyps, vocabulary),
            "bare_answers": int(sum(is_bare_answer(h) for h in hyps))}


def choose_decoding(scores: list[dict], min_distinct: float) -> int:
    """Index of the decoding with the best valid BLEU-1 among those whose share of distinct outputs
    reaches ``min_distinct`` (all of them when none does)."""
    ok = [i for i, sc in enumerate(scores) if sc["distinct_outputs"] >= min_distinct] or list(range(len(scores)))
    return max(ok, key=lambda i: (scores[i]["bleu1"], -i))


def _explanation_task(model: P5Model, ser: P5Serializer, split: Split, data: TrainData, ecfg: dict,
                      rng: np.random.Generator, n_max: int, seed: int) -> dict:
    """Explanation BLEU/ROUGE, distinct outputs and a readability proxy on test events with a review.

    Decodings per template: ``greedy`` (beams and n-gram blocking from the recipe), ``sampled``
    (nucleus at ``explanation_top_p``, if set) and, with ``explanation_grid`` (a list of decoding
    settings: top_p, temperature, repetition_penalty, no_repeat_ngram_size), ``chosen``: the grid
    setting with the best BLEU-1 on valid reviews (first seen template) among those with at least
    ``explanation_min_distinct`` distinct outputs, then applied once to test. With
    ``explanation_constrained`` every decoding is held to the explanation family
    (:mod:`textrec.p5.answers`); ``bare_answers`` counts outputs that hold no word, and
    ``unconstrained_bare_answers`` what plain greedy decoding would have produced.
    """
    tokens = int(ecfg.get("explanation_tokens", 40))
    constrained = bool(ecfg.get("explanation_constrained", False))
    words = ser.config.review_words
    vocab: dict[str, int] = {}
    if data.reviews is not None:
        for t in data.reviews["text"].astype(str):
            for w in rouge_tokens(" ".join(t.split()[:words])):
                vocab[w] = vocab.get(w, 0) + 1
    vocabulary = {w for w, c in vocab.items() if c >= 2}

    def sources(tpl, users, items, stars) -> list[str]:
        return [tpl.render_source(user=int(u), item=ser.item(it), item_title=ser.title(it),
                                  rating="unknown" if pd.isna(r) else f"{float(r):g}")
                for u, it, r in zip(users, items, stars)]

    def decode(src: list[str], setting: dict) -> list[str]:
        top_p = setting.get("top_p")
        if constrained:
            return family_answers(model, src, "explanation", max_new_tokens=tokens,
                                  num_beams=int(setting.get("beams", 1)), top_p=top_p,
                                  temperature=float(setting.get("temperature", 1.0)),
                                  repetition_penalty=float(setting.get("repetition_penalty", 1.0)),
                                  no_repeat_ngram_size=int(setting.get("no_repeat_ngram_size", 0)), seed=seed)
        return generate_text(model, src, max_new_tokens=tokens, num_beams=int(setting.get("beams", 1)),
                             no_repeat_ngram_size=int(setting.get("no_repeat_ngram_size", 0)), top_p=top_p, seed=seed)

    users, items, stars, refs, missing = _review_rows(split, split.test, rng, n_max, words)
    res: dict = {"n_rows": int(len(refs)), "rows_without_review": missing, "constrained": constrained,
                 "known_word_vocabulary": len(vocabulary), "per_template": {}}
    greedy = {"beams": int(ecfg.get("explanation_beams", 1)),
              "no_repeat_ngram_size": int(ecfg.get("explanation_no_repeat_ngram", 0))}
    decodings = [("greedy", greedy)]
    if ecfg.get("explanation_top_p") is not None:
        decodings.append(("sampled", {**greedy, "beams": 1, "top_p": float(ecfg["explanation_top_p"])}))
    grid = ecfg.get("explanation_grid")
    if grid:
        v_users, v_items, v_stars, v_refs, _ = _review_rows(split, split.valid, np.random.default_rng(seed + 2),
                                                            int(ecfg.get("explanation_valid_rows", n_max)), words)
        tpl = ser.template("explanation")
        v_src = sources(tpl, v_users, v_items, v_stars)
        scored = [{"setting": dict(g), **_text_scores(v_refs, decode(v_src, dict(g)), vocabulary)} for g in grid]
        for sc in scored:
            sc.pop("examples", None)
        best = choose_decoding(scored, float(ecfg.get("explanation_min_distinct", 0.5)))
        res["valid_grid"] = {"template": tpl.id, "n_rows": len(v_refs), "settings": scored, "chosen": best,
                             "rule": "best valid BLEU-1 among settings with distinct share >= "
                                     f"{float(ecfg.get('explanation_min_distinct', 0.5))}"}
        decodings.append(("chosen", dict(grid[best])))
    for tpl in ser.templates["explanation"]:
        src = sources(tpl, users, items, stars)
        res["per_template"][tpl.id] = {"unseen": tpl.unseen}
        for name, setting in decodings:
            hyps = decode(src, setting)
            scores = {**_text_scores(refs, hyps, vocabulary),
                      "examples": [[src[j], hyps[j], refs[j]] for j in range(min(3, len(refs)))]}
            if name == "greedy":
                res["per_template"][tpl.id].update(scores)
            else:
                res["per_template"][tpl.id][name] = {**setting, **scores}
        if constrained:
            plain = generate_text(model, src, max_new_tokens=tokens)
            res["per_template"][tpl.id]["unconstrained_bare_answers"] = int(sum(is_bare_answer(h) for h in plain))
    return res


def run_indexing(scheme: str, split: Split, recipe: dict, seed: int, max_minutes: float | None,
                 save_models: str | None, progress: bool) -> dict:
    """Train and evaluate P5 with one indexing scheme; returns its result record."""
    ds = split.dataset
    t_all = time.perf_counter()
    parts = build_parts(split, recipe, scheme, seed)
    ser, data, model, index = parts.serializer, parts.data, parts.model, parts.serializer.index
    index_seconds = parts.index_seconds
    tr = {**recipe.get("trainer", {}), "seed": seed}
    if max_minutes is not None:
        tr["max_minutes"] = max_minutes
    ecfg = recipe.get("eval", {})
    seen = list(ecfg.get("seen_templates", ["seq-1"]))
    unseen = list(ecfg.get("unseen_templates", ["seq-unseen-1"]))
    tr.setdefault("eval_template", seen[0])
    tcfg = config_from_dict(P5TrainConfig, tr, "P5 trainer")
    cost = None
    if ecfg.get("cost_seconds"):  # prompt cost measured on a copy, before training
        cost = serialization_cost(model, ser, data, batch_size=tcfg.batch_size, seconds=float(ecfg["cost_seconds"]),
                                  lr=tcfg.lr, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    rating_valid = valid_rating_rows(ser, split, data) if tcfg.metric == "rating_rmse" else None
    history = train_p5(model, ser, data, split.valid, tcfg, progress=progress, rating_valid=rating_valid)
    train_seconds, train_cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    refit = _refit_new_items(model, ser, split, tcfg.eval_template)
    examples_seen = sum(e["steps"] for e in history["epochs"]) * tcfg.batch_size
    beams = int(ecfg.get("beams", 10))
    rec = P5Recommender(model=model, serializer=ser, template_id=seen[0], k=beams)
    pop = split.item_popularity()
    valid_set, valid_note = split.valid, "all valid rows"
    n_v = ecfg.get("valid_rows")  # large catalogs: valid on a seeded subset of users (labelled), test on all
    if n_v is not None and int(n_v) < len(split.valid):
        keep = np.sort(np.random.default_rng(seed + 1).choice(len(split.valid), size=int(n_v), replace=False))
        valid_set, valid_note = split.valid.select(keep), f"seeded subset of {int(n_v)} of {len(split.valid)} valid rows"
    valid = evaluate(rec, valid_set, split.n_items, ks=KS, popularity=pop)
    test = evaluate(rec, split.test, split.n_items, ks=KS, popularity=pop)
    n_t = min(int(ecfg.get("template_users", len(split.test))), len(split.test))
    rows = np.sort(np.random.default_rng(seed).choice(len(split.test), size=n_t, replace=False))
    sub = split.test.select(rows)
    per_template = {}
    for tid in seen + unseen:
        r = P5Recommender(model=model, serializer=ser, template_id=tid, k=beams)
        res = test if (tid == seen[0] and n_t == len(split.test)) else evaluate(r, sub, split.n_items, ks=KS)
        per_template[tid] = {"unseen": tid in unseen, "hr@10": round(res.metrics["hr@10"], 6),
                             "ndcg@10": round(res.metrics["ndcg@10"], 6), "mrr@10": round(res.metrics["mrr@10"], 6),
                             "users_per_s": round(res.users_per_second, 1)}

    def mean_over(flag: bool) -> dict:
        vals = [v for v in per_template.values() if v["unseen"] == flag]
        return {k: round(float(np.mean([v[k] for v in vals])), 6) for k in ("hr@10", "ndcg@10", "mrr@10")}

    out = {"indexing": scheme, "leaky": index.leaky, "index": repr(index), "index_report": index.report,
           "index_seconds": round(index_seconds, 1), "n_parameters": model.n_parameters(),
           "vocab_size": len(model.tokenizer), "train_seconds": round(train_seconds, 1),
           "train_cpu_seconds": round(train_cpu_seconds, 1), "examples_seen_approx": int(examples_seen),
           "device": str(model.device), "item_init": parts.init_report, "serialization_cost": cost,
           "decode": "first_token" if all(len(t) == 1 for t in index.tokens) else "beam",
           "training_history": history, "beams": beams,
           "valid": valid.to_dict(), "valid_rows": valid_note, "test": test.to_dict(),
           "inference_users_per_s": round(test.users_per_second, 1),
           "templates": {"headline": seen[0], "rows_per_template": n_t, "per_template": per_template,
                         "seen_mean": mean_over(False), "unseen_mean": mean_over(True)},
           "wall_seconds": round(time.perf_counter() - t_all, 1)}
    t0 = time.perf_counter()
    extra = secondary_tasks(model, ser, split, data, ecfg, seed)
    if extra:
        out["secondary_tasks"] = {**extra, "seconds": round(time.perf_counter() - t0, 1)}
    if refit is not None:
        out["new_item_refit"] = refit
    if valid_set.is_new is not None:
        out["valid_new_items"] = {**valid.subset(valid_set.is_new), "n_rows": int(valid_set.is_new.sum())}
        out["valid_warm_items"] = {**valid.subset(~valid_set.is_new), "n_rows": int((~valid_set.is_new).sum())}
    if split.test.is_new is not None:  # new-item split: only semantic ids carry signal for unseen items
        out["test_new_items"] = {**test.subset(split.test.is_new), "n_rows": int(split.test.is_new.sum())}
        out["test_warm_items"] = {**test.subset(~split.test.is_new), "n_rows": int((~split.test.is_new).sum())}
    if scheme == "sequential":
        out["leak_target_is_last_plus_one"] = {"valid": sequential_leak(index, split.valid),
                                               "test": sequential_leak(index, split.test)}
    if save_models:
        rec.save_pretrained(Path(save_models) / f"p5_{ds.name}_{scheme}")
    return out


def _refit_new_items(model: P5Model, ser: P5Serializer, split: Split, template_id: str | None) -> dict | None:
    """After training: new items' rows from the text map refitted on trained warm rows, if the recipe
    asks (``model.new_item_refit``); the scale is chosen on valid NDCG@10 over all valid rows."""
    from textrec.p5.item_init import refit_after_training
    from textrec.p5.trainer import valid_ndcg

    if not model.config.new_item_refit:
        return None
    from textrec.text.encoder import item_texts as encoder_texts

    c0 = time.process_time()
    report = refit_after_training(
        model, split.train_sequences(), encoder_texts(split.dataset, verbose=False).texts,
        score=lambda: valid_ndcg(model, ser, split.valid, split.n_items, template_id=template_id)["ndcg@10"])
    return {**report, "cpu_seconds": round(time.process_time() - c0, 1)}


def baseline_rows(dataset: str, split_kind: str | None = None) -> dict:
    """Test HR/NDCG/MRR@10 of the core baselines from their committed result JSON.

    Empty if absent, or if that table was measured on another split than ``split_kind``: rows of
    another split are not comparable and must not stand beside the P5 rows.
    """
    data = published_result(f"baselines_{dataset}.json")
    if data is None:
        return {}
    if split_kind is not None and _split_kind(data.get("split")) not in (None, split_kind):
        return {}
    # refit rows (trained on train+valid) have no valid metrics and another protocol: left out
    return {name: {k: m["test"].get(k) for k in ("hr@10", "ndcg@10", "mrr@10")} | {"valid_ndcg@10": m["valid"].get("ndcg@10")}
            for name, m in data.get("models", {}).items() if "valid" in m and "test" in m}


def _split_kind(split: object) -> str | None:
    """The split name a result JSON records (a dict with ``kind``, or a plain string)."""
    if isinstance(split, dict):
        return split.get("kind")
    return split if isinstance(split, str) else None


def markdown(res: dict, name: str | None = None) -> str:
    """The Markdown beside the JSON: the one renderer's P5 block (``textrec.report``), as in eval/README."""
    from textrec.report import result_markdown

    return result_markdown(name or f"p5_{res['dataset']}.json", res)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench p5``."""
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    add_dataset_options(ap)
    add_recipe_options(ap, "p5_ml100k")
    ap.add_argument("--indexings", nargs="+", default=["random", "sequential", "collaborative", "semantic"],
                    choices=list(SCHEMES))
    add_threads_option(ap)
    ap.add_argument("--max-minutes", type=positive_float, default=None,
                    help="training cap per indexing (default: recipe)")
    add_seed_option(ap)
    ap.add_argument("--split", default="auto", help="auto (leave-one-out here) or new_item (held-out items)")
    ap.add_argument("--save-models", default=None, help="also save each trained model under this folder")
    ap.add_argument("--tag", default=None, help="result file suffix (default: from the recipe name)")
    ap.add_argument("--cost-only", type=positive_float, default=None, metavar="SECONDS",
                    help="only measure prompt cost (tokens, examples per wall/CPU second over SECONDS) per indexing")
    add_progress_option(ap)
    add_output_options(ap, "p5")


def run_cost(args: argparse.Namespace, split: Split, recipe: dict, tag: str, t0: float) -> int:
    """``--cost-only``: source tokens per example and training examples per wall/CPU second, per indexing."""
    tcfg = config_from_dict(P5TrainConfig, recipe.get("trainer", {}), "P5 trainer")
    res = {"benchmark": "p5_serialization_cost", "dataset": split.dataset.name, "recipe": args.recipe,
           "recipe_overrides": list(args.overrides), "recipe_content": recipe,
           "note": "examples per CPU second is the comparable number on a shared machine", "cost": {}}
    writer = writer_from_args(args, "p5")
    writer.started = t0
    with writer:
        for scheme in args.indexings:
            parts = build_parts(split, recipe, scheme, args.seed)
            res["cost"][scheme] = serialization_cost(parts.model, parts.serializer, parts.data,
                                                     batch_size=tcfg.batch_size, seconds=args.cost_only,
                                                     lr=tcfg.lr, seed=args.seed)
            print(scheme, res["cost"][scheme], flush=True)
        res.update(writer.metadata())
        writer.write_json(f"p5_{tag}_cost.json", res)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run every requested indexing, write the JSON/Markdown results."""
    t0 = time.perf_counter()
    ds = load_dataset_from_args(args)
    split = make_split(ds, args.split)
    recipe = recipe_from_args(args, "p5")
    tag = ds.name + ("" if args.split == "auto" else f"_{args.split}")
    stem = Path(args.recipe).stem.removeprefix("p5_")
    if getattr(args, "tag", None):
        tag += "_" + args.tag
    elif args.recipe != "p5_ml100k" and stem != ds.name:  # other recipes never overwrite the default run's files
        tag += "_" + stem
    combined = f"p5_{tag}.json"
    if getattr(args, "cost_only", None):
        return run_cost(args, split, recipe, tag, t0)
    res = {"benchmark": "p5_sequential", "dataset": ds.name, "split": split.describe(), "recipe": args.recipe,
           "recipe_overrides": list(args.overrides),
           "recipe_content": recipe, "protocol": "fit on train, early-stop on valid NDCG@10 (trainer.eval_users valid rows; null = all), "
           "test with valid appended and no refit; multi-token ids: trie-constrained beam search over the full "
           "catalogue, consumed items removed from the trie, items outside the beams score -inf (never hits), so "
           "HR/NDCG/MRR@K are exact for K <= beams; one-token ids: every item scored by its first-token "
           "log-probability (full ranking), history masked", "seed": args.seed, "p5": {}, "baselines": baseline_rows(ds.name, split.describe().get("kind"))}
    writer = writer_from_args(args, "p5")
    writer.started = t0

    def earlier_indexings() -> dict:
        # keep indexings finished by earlier (or concurrent) runs of the same recipe in the same folder
        path = writer.existing(combined)
        if path is None:
            return {}
        old = json.loads(path.read_text())
        return old.get("p5", {}) if old.get("recipe") == args.recipe else {}

    res["p5"] = earlier_indexings()
    with writer:
        for scheme in args.indexings:
            r = run_indexing(scheme, split, recipe, args.seed, args.max_minutes, args.save_models, not args.quiet)
            res["p5"] = {**earlier_indexings(), **res["p5"], scheme: r}
            # the per-indexing part sits in the folder of its result of record (eval/results/<record>/)
            writer.write_json(f"p5_{tag}/p5_{tag}_{scheme}.json", {**{k: v for k, v in res.items() if k != "p5"}, **r})
            t = r["test"]
            print(f"P5-{scheme}: test hr@10 {t['hr@10']:.4f} ndcg@10 {t['ndcg@10']:.4f} mrr@10 {t['mrr@10']:.4f} "
                  f"valid ndcg@10 {r['valid']['ndcg@10']:.4f} unseen-tpl ndcg@10 "
                  f"{r['templates']['unseen_mean']['ndcg@10']:.4f} train {r['train_seconds']:.0f}s", flush=True)
            res.update(writer.metadata())
            writer.write_json(combined, res)
            writer.write_text(f"p5_{tag}.md", markdown(res, combined))
    return 0
