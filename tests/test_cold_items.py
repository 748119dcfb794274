"""New-item rank calibration: monotone rates, placement inside the warm-score range, persistence, and
the guard on TextFusion's and VQ-Rec's add_items (an uninformative text cannot take over)."""

import numpy as np
import pandas as pd
import pytest
import torch

from textrec.data import RecDataset
from textrec.data.splits import leave_one_out
from textrec.models.base import TrainView
from textrec.models.cold_items import RankCalibration, binned_rate, rank_bins, seen_mask, warm_exposure


def _synthetic(n_rows=400, n_items=60, seed=0):
    """Scores whose top ranks hold the targets, and an affinity that is informative but weaker."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n_rows, n_items, generator=g)
    targets = torch.randint(0, n_items - 10, (n_rows,), generator=g)
    scores[torch.arange(n_rows), targets] += 2.5
    affinity = torch.randn(n_rows, n_items, generator=g)
    affinity[torch.arange(n_rows), targets] += 1.0
    cold = torch.zeros(n_items, dtype=torch.bool)
    cold[-10:] = True
    seen = torch.zeros(n_rows, n_items, dtype=torch.bool)
    return scores, affinity, seen, cold, np.arange(n_rows), targets.numpy()


def test_rates_are_non_increasing_and_bins_cover_every_rank():
    edges = rank_bins(1000)
    assert edges[0] == 1 and edges[-1] == 1001 and np.all(np.diff(edges) > 0)
    ranks = np.random.default_rng(0).geometric(0.05, 500)
    rate = binned_rate(ranks, edges, warm_exposure(edges, np.full(500, 1000)))
    assert np.all(np.diff(rate) < 0) and np.all(rate > 0)


def test_placement_is_monotone_and_inside_the_warm_scores():
    scores, affinity, seen, cold, rows, targets = _synthetic()
    cal = RankCalibration.fit(scores, affinity, seen, cold, rows, targets)
    assert cal.report["new_rate_from"].startswith("warm valid targets")
    # a weaker signal than the model's own: its best text rank lands below the top warm ranks
    r = cal.warm_rank_for(np.array([1.0, 5.0, 20.0, 45.0]))
    assert np.all(np.diff(r) > 0) and r[0] >= 1.0
    placed = cal.place(scores, affinity, seen, cold)
    assert torch.equal(placed[:, ~cold], scores[:, ~cold])  # warm scores untouched
    warm = scores[:, ~cold]
    lo, hi = warm.min(1).values, warm.max(1).values
    span = hi - lo
    new = placed[:, cold]
    assert bool(((new >= lo[:, None] - span[:, None]) & (new <= hi[:, None] + span[:, None])).all())
    # within a row, a more affine new item never scores lower
    order = torch.argsort(affinity[:, cold], dim=1)
    assert bool((torch.diff(new.gather(1, order), dim=1) >= -1e-6).all())


def test_uninformative_new_items_land_low_and_matching_ones_high():
    scores, affinity, seen, cold, rows, targets = _synthetic()
    cal = RankCalibration.fit(scores, affinity, seen, cold, rows, targets)
    aff = affinity.clone()
    aff[:, -5:] = -10.0  # junk: less affine than every warm item for everyone
    aff[:, -10] = 10.0  # a perfect text match for everyone
    placed = cal.place(scores, aff, seen, cold).masked_fill(seen, float("-inf"))
    top10 = torch.topk(placed, 10, dim=1).indices
    junk = torch.arange(scores.shape[1] - 5, scores.shape[1])
    assert not torch.isin(top10, junk).any()
    rank_match = (placed > placed[:, -10:-9]).sum(1) + 1
    rank_junk = (placed > placed[:, -1:]).sum(1) + 1
    assert bool((rank_match < rank_junk).all()) and bool((rank_junk > 15).all())


def test_new_rate_is_measured_on_new_item_targets_when_valid_has_them():
    scores, affinity, seen, cold, rows, targets = _synthetic()
    targets = targets.copy()
    targets[::4] = scores.shape[1] - 1 - (np.arange(len(targets[::4])) % 10)  # a quarter of targets are new
    affinity[torch.arange(len(rows))[::4], torch.as_tensor(targets[::4])] += 3.0
    cal = RankCalibration.fit(scores, affinity, seen, cold, rows, targets)
    assert cal.report["new_targets"] == len(targets[::4]) and cal.report["new_rate_from"].startswith("valid rows")


def test_tensors_round_trip_and_bad_tensors_fail():
    scores, affinity, seen, cold, rows, targets = _synthetic()
    cal = RankCalibration.fit(scores, affinity, seen, cold, rows, targets)
    cal.scale = 2.0
    back = RankCalibration.from_tensors(cal.to_tensors("c"), "c")
    assert back.scale == 2.0 and torch.equal(back.place(scores, affinity, seen, cold), cal.place(scores, affinity,
                                                                                                  seen, cold))
    bad = cal.to_tensors("c")
    bad["c.warm_rate"] = bad["c.warm_rate"][:-1]
    with pytest.raises(ValueError, match="inconsistent rank calibration"):
        RankCalibration.from_tensors(bad, "c")
    assert RankCalibration.from_tensors({}, "c") is None


def test_seen_items_are_not_candidates():
    scores, affinity, _, cold, rows, targets = _synthetic(n_rows=50)
    seen = seen_mask([np.array([0, 1, 2])] * 50, scores.shape[1])
    cal = RankCalibration.fit(scores, affinity, seen, cold, rows, targets)
    assert cal.report["valid_pairs"] <= 50


def _catalog():
    """24 items in three instrument families; each user listens within one family, so the text
    (the family word) predicts the next item."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(90):
        fam = u % 3
        for t, i in enumerate(rng.choice(np.arange(fam, 24, 3), 6, replace=False)):
            rows.append((f"u{u}", f"i{i}", float(t)))
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(24)],
                          "title": [f"{['flute', 'cello', 'harp'][i % 3]} music piece {i}" for i in range(24)]})
    return RecDataset.from_frames("cold", pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items,
                                  text_fields=["title"])


def _junk_share(model, split, junk):
    hists = split.test.histories()
    s = torch.as_tensor(model.score(np.zeros(len(hists)), hists)).clone()
    for i, h in enumerate(hists):
        s[i, torch.as_tensor(h)] = float("-inf")
    top = torch.topk(s, 5, dim=1).indices
    return float(torch.isin(top, torch.as_tensor(junk)).any(1).float().mean())


@pytest.mark.parametrize("engine", ["TextFusion", "VQ-Rec"])
def test_added_uninformative_items_do_not_take_over(engine, tmp_path):
    torch.set_num_threads(1)
    from textrec.models import Recommender

    split = leave_one_out(_catalog())
    if engine == "TextFusion":
        from tests.test_fusion import SMALL, bag_of_words
        from textrec.models.fusion import TextFusionRec

        model = TextFusionRec(**SMALL)
        model.text_embedder = bag_of_words
    else:
        from textrec.vqrec.model import VQRec

        model = VQRec(backbone={"hidden": 16, "layers": 1, "heads": 1, "ff": 32, "max_len": 8},
                      trainer={"epochs": 3, "max_len": 8, "batch_size": 32}, n_subvectors=4, n_centroids=16)
    model.fit(TrainView.from_split(split, with_text=True), progress=False)
    assert model.calibration is not None
    texts = [f"Item number {n} added under load" for n in range(8)]
    kw = {"embeddings": bag_of_words(texts)} if engine == "TextFusion" else {}
    junk = model.add_items(texts=texts, ids=[f"junk-{n}" for n in range(8)], **kw)
    assert _junk_share(model, split, junk) <= 0.1
    model.save_pretrained(tmp_path / "m")
    loaded = Recommender.from_pretrained(tmp_path / "m")
    h = split.test.histories()[:6]
    assert torch.equal(torch.as_tensor(model.score(np.zeros(6), h)), torch.as_tensor(loaded.score(np.zeros(6), h)))


def test_a_handful_of_new_item_targets_is_not_a_rate_curve():
    scores, affinity, seen, cold, rows, targets = _synthetic()
    targets = targets.copy()
    targets[0] = scores.shape[1] - 1  # one valid target is a new item (ML-100K's default split has one)
    cal = RankCalibration.fit(scores, affinity, seen, cold, rows, targets)
    assert cal.report["new_targets"] == 1 and cal.report["new_rate_from"].startswith("warm valid targets")


def test_direct_rank_count_equals_the_sorted_count_with_ties_and_exclusions():
    """Few query columns are counted by comparison, many by sorting: the two agree exactly."""
    from textrec.models import cold_items

    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 20, (40, 300), generator=g).float()  # many ties
    excluded = torch.rand(40, 300, generator=g) < 0.2
    query = values[:, :70].clone()
    many = cold_items.candidate_ranks(values, excluded, query)  # 70 > DIRECT_COUNT_MAX: sorted
    assert query.shape[1] > cold_items.DIRECT_COUNT_MAX
    few = torch.cat([cold_items.candidate_ranks(values, excluded, query[:, j:j + 10]) for j in range(0, 70, 10)], 1)
    assert torch.equal(many, few)
    brute = 1 + ((values.masked_fill(excluded, float("-inf"))[:, None, :] > query[:, :, None]).sum(-1)).double()
    assert torch.equal(few, brute)


def test_balanced_scale_weighs_new_and_warm_target_rows_the_same():
    """The balanced objective picks the multiplier best on the mean of new-row and warm-row NDCG@10,
    and never gives new-target rows a lower NDCG@10 than the all-rows choice does."""
    from textrec.metrics.ranking import metrics_from_ranks, target_ranks
    from textrec.models.cold_items import SCALES, fit_calibration

    scores, affinity, seen, cold, rows, targets = _synthetic(n_rows=600)
    targets = targets.copy()
    targets[::10] = scores.shape[1] - 1 - (np.arange(len(targets[::10])) % 10)  # a tenth of targets are new
    affinity[torch.arange(len(rows))[::10], torch.as_tensor(targets[::10])] += 3.0
    new_row = np.zeros(len(rows), dtype=bool)
    new_row[::10] = True

    def per_row(cal):
        s = cal.place(scores, affinity, seen, cold).masked_fill(seen, float("-inf"))
        ranks = target_ranks(s, torch.as_tensor(rows), torch.as_tensor(targets)).numpy()
        return metrics_from_ranks(ranks, rows, len(rows), [10])["ndcg@10"]

    plain = fit_calibration(scores, affinity, seen, cold, rows, targets, len(rows))
    fair = fit_calibration(scores, affinity, seen, cold, rows, targets, len(rows), objective="balanced")
    assert fair.report["scale_objective"] == "balanced" and plain.report["scale_objective"] == "rows"
    chosen, values = fair.scale, {}
    for g in SCALES:
        fair.scale = g
        r = per_row(fair)
        values[g] = (r[new_row].mean() + r[~new_row].mean()) / 2
    fair.scale = chosen
    assert values[chosen] == pytest.approx(max(values.values()), abs=1e-5)
    assert per_row(fair)[new_row].mean() >= per_row(plain)[new_row].mean() - 1e-9
    with pytest.raises(ValueError, match="objective"):
        fit_calibration(scores, affinity, seen, cold, rows, targets, len(rows), objective="new")
