"""Rec-R1: held-out users (never in SFT/GRPO) as their own setting, and SFT targets that fit the
completion budget (cut at a word boundary, built from what the capped prompt shows)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_shared_data, tiny_llama

from textrec.query.catalog import Catalog
from textrec.query.tasks import (
    SETTINGS,
    QueryTask,
    canonical_setting,
    drop_users,
    held_out_user_mask,
)

WORDS = "products a user bought , oldest first : - Search query for the next one".split()
TITLE = "red apple juice green pie orange cake chocolate".split()


def test_held_out_mask_is_seeded_sized_and_checked():
    m = held_out_user_mask(1000, 0.2, seed=0)
    assert m.dtype == bool and m.sum() == 200
    assert np.array_equal(m, held_out_user_mask(1000, 0.2, seed=0))
    assert not np.array_equal(m, held_out_user_mask(1000, 0.2, seed=1))
    assert held_out_user_mask(50, 0.0).sum() == 0
    with pytest.raises(ValueError, match="fraction"):
        held_out_user_mask(10, 1.0)
    tasks = [QueryTask(user=u, history=np.array([0]), target=1) for u in range(1000)]
    kept = drop_users(tasks, m)
    assert len(kept) == 800 and not any(m[t.user] for t in kept)


def test_settings_names_and_the_old_alias():
    assert {"transductive", "held_out_users", "held_out_items"} <= set(SETTINGS)
    assert canonical_setting("inductive") == "held_out_items"
    assert canonical_setting("held_out_users") == "held_out_users"
    with pytest.raises(ValueError, match="unknown setting"):
        canonical_setting("cold")


def test_config_rejects_a_bad_held_out_fraction_and_passes_the_target_budget():
    from textrec.query.grpo_config import QueryGRPOConfig, load_grpo_config

    with pytest.raises(ValueError, match="held_out_users_frac"):
        QueryGRPOConfig(held_out_users_frac=1.5)
    cfg = load_grpo_config("recr1_cpu_dense_t24")
    assert cfg.held_out_users_frac == 0.2 and cfg.max_completion_length == cfg.eval_max_new_tokens == 24
    assert cfg.sft_config().max_target_tokens == 24  # SFT never teaches more than GRPO can write
    assert QueryGRPOConfig(sft_max_target_tokens=10).sft_config().max_target_tokens == 10
    assert cfg.sft_config().candidates == ("last_title",)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama(tmp_path_factory.mktemp("tiny"), set(WORDS) | set(TITLE)))


def test_completion_ids_cut_at_a_word_boundary_and_end_with_eos(tok):
    from textrec.query.sft import completion_ids, sft_pairs
    from textrec.query.tasks import load_template

    q = " ".join(TITLE)
    full, cut = completion_ids(q, tok, bare=True)
    assert not cut and full[-1] == tok.eos_token_id
    budget = len(full) - 2
    ids, cut = completion_ids(q, tok, bare=True, max_tokens=budget)
    assert cut and len(ids) <= budget and ids[-1] == tok.eos_token_id
    text = tok.decode(ids[:-1]).strip()
    assert q.startswith(text) and text.split() == TITLE[: len(text.split())]  # whole words only
    tiny, cut = completion_ids(q, tok, bare=True, max_tokens=2)
    assert cut and len(tiny) == 2 and tiny[-1] == tok.eos_token_id
    task = QueryTask(user=0, history=np.arange(2), target=0, context=["red apple", "green pie"])
    stats: dict[str, int] = {}
    # two targets that are one after cutting give one SFT pair
    pairs = sft_pairs([task], [[q, q + " extra"]], load_template("query-bare"), tok, "toy",
                      max_target_tokens=budget, stats=stats)
    assert len(pairs) == 1 and stats["targets_cut"] == 2 and len(pairs[0][1]) <= budget


@requires_shared_data
def test_held_out_users_tasks_on_scientific_are_exactly_the_masked_users():
    from textrec.data.registry import load_dataset
    from textrec.query.catalog import Catalog
    from textrec.query.tasks import make_tasks, split_for

    ds = load_dataset("scientific")
    cat = Catalog.from_dataset(ds, verbose=False)
    mask = held_out_user_mask(ds.n_users)
    split = split_for(ds, "held_out_users")
    test = make_tasks(ds, "held_out_users", "test", cat, max_history=5, split=split)
    train = make_tasks(ds, "held_out_users", "train", cat, max_history=5, split=split)
    assert test and all(mask[t.user] for t in test)
    assert len({t.user for t in test}) == len(test)  # one test row per user
    assert train and not any(mask[t.user] for t in train)
    assert len(test) + len(train) >= 0.95 * ds.n_users


def test_bench_cli_accepts_the_new_settings():
    from textrec.cli import build_parser

    args = build_parser().parse_args(["bench", "query", "--settings", "held_out_users", "held_out_items",
                                      "--n-users-held-out", "300"])
    assert args.settings == ["held_out_users", "held_out_items"] and args.n_users_held_out == 300


def test_bench_rows_of_each_setting_and_a_seeded_subsample():
    from textrec.query.bench import _eval_rows

    class Rows:
        def __init__(self, users, is_new):
            self.users, self.is_new = np.asarray(users), np.asarray(is_new)

        def __len__(self):
            return len(self.users)

        def select(self, rows):
            return Rows(self.users[rows], self.is_new[rows])

    class Split:
        test = valid = Rows(np.arange(10), np.arange(10) % 3 == 0)

    mask = np.zeros(10, dtype=bool)
    mask[[1, 4, 7, 8]] = True
    es, total = _eval_rows(Split(), "held_out_users", "test", None, 0, mask)
    assert total == 4 and es.users.tolist() == [1, 4, 7, 8]
    es, total = _eval_rows(Split(), "inductive", "test", None, 0)  # the old name of held_out_items
    assert total == 4 and es.users.tolist() == [0, 3, 6, 9]
    es, total = _eval_rows(Split(), "held_out_users", "test", 2, 0, mask)
    assert total == 4 and len(es) == 2 and set(es.users.tolist()) <= {1, 4, 7, 8}
    with pytest.raises(ValueError, match="mask"):
        _eval_rows(Split(), "held_out_users", "test", None, 0)


def test_sft_targets_from_one_candidate_kind_copy_the_newest_title():
    from textrec.query.sft import QuerySFTConfig, sft_targets

    class Ranks:
        kind = "fake"
        catalog = Catalog.from_texts(["green pie", "red apple juice", "red apple"], name="toy")  # tfidf weights

        def target_ranks(self, queries, targets, histories):
            return np.array([0 if "pie" in q else 5000 for q in queries])

    tasks = [QueryTask(user=0, history=np.arange(2), target=0, context=["green pie", "red apple juice"]),
             QueryTask(user=1, history=np.arange(2), target=0, context=["red apple", "green pie"])]
    both, _ = sft_targets(tasks, Ranks(), QuerySFTConfig(max_query_words=8))
    # the best of all kinds: every query that retrieves (names "pie"), ties kept; the newest title alone does not
    assert "red apple juice green pie" in both[0] and all("pie" in q for q in both[0])
    assert "red apple juice" not in both[0]
    last, report = sft_targets(tasks, Ranks(), QuerySFTConfig(max_query_words=8, candidates=("last_title",)))
    assert last == [["red apple juice"], ["green pie"]] and set(report["chosen"]) == {"last_title"}
    with pytest.raises(ValueError, match="subset"):
        sft_targets(tasks, Ranks(), QuerySFTConfig(candidates=("titles",)))


def test_one_fraction_decides_who_is_held_out():
    from textrec.query.tasks import HELD_OUT_USERS_FRAC, held_out_frac_for

    assert held_out_frac_for("held_out_users") == HELD_OUT_USERS_FRAC  # the setting needs some
    assert held_out_frac_for("transductive") == 0.0 and held_out_frac_for("inductive") == 0.0
    assert held_out_frac_for("transductive", 0.3) == 0.3 and held_out_frac_for("held_out_users", 0.3) == 0.3
    with pytest.raises(ValueError, match="unknown setting"):
        held_out_frac_for("nope")
