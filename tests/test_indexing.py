"""Item indexing schemes and the prefix trie used for constrained decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from textrec.indexing import (
    ItemIndex,
    ItemTrie,
    TrieLogitsProcessor,
    build_index,
    codes_to_index,
    collaborative_index,
    hybrid_index,
    random_index,
    semantic_index,
    sequential_index,
)


def test_random_index_unique_and_round_trip(tmp_path):
    ix = random_index(150, seed=3)
    assert ix.n_items == 150 and not ix.leaky
    assert len({ix.item_text(i) for i in range(150)}) == 150
    assert ix.vocab() == [f"<n_{d}>" for d in range(10)]
    back = ItemIndex.load(ix.save(tmp_path / "ix.json"))
    assert back.tokens == ix.tokens and back.scheme == "random"
    assert random_index(150, seed=3).tokens == ix.tokens
    assert random_index(150, seed=4).tokens != ix.tokens


def test_sequential_index_is_flagged_and_follows_training_order():
    seqs = [np.array([5, 2, 7]), np.array([2, 9, 0])]
    ix = sequential_index(seqs, 11)
    assert ix.leaky
    order = [5, 2, 7, 9, 0]
    for n, it in enumerate(order, start=1):
        assert ix.item_text(it) == "".join(f"<n_{c}>" for c in str(n))
    assert ix.report["items_not_in_train"] == 11 - len(order)


def test_parse_and_find_items():
    ix = codes_to_index(np.array([[1, 2], [1, 3], [4, 2]]))
    assert ix.parse("<a_1><b_3>") == 1
    assert ix.parse("<a_1>") is None
    assert ix.find_items("history: <a_4><b_2>, <a_1><b_2> next") == [2, 0]


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match="share the id"):
        ItemIndex("x", [["<a_1>"], ["<a_1>"]])
    with pytest.raises(ValueError, match="not of the form"):
        ItemIndex("x", [["a1"]])


def test_semantic_collision_rule_adds_disambiguation_token():
    codes = np.array([[1, 2], [1, 2], [3, 4], [1, 2]])
    ix = codes_to_index(codes)
    assert ix.tokens[0] == ["<a_1>", "<b_2>", "<z_0>"]
    assert ix.tokens[1] == ["<a_1>", "<b_2>", "<z_1>"]
    assert ix.tokens[3] == ["<a_1>", "<b_2>", "<z_2>"]
    assert ix.tokens[2] == ["<a_3>", "<b_4>"]
    assert ix.report["n_colliding_items"] == 3 and ix.report["largest_collision_group"] == 3


def test_semantic_index_from_embeddings_groups_similar_items():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32)) * 5
    emb = np.concatenate([c + 0.05 * rng.normal(size=(40, 32)) for c in centers]).astype(np.float32)
    ix, pq = semantic_index([""] * len(emb), n_subvectors=2, n_centroids=4, opq=False, embeddings=emb)
    assert ix.scheme == "semantic" and ix.n_items == 160
    first = [ix.tokens[i][0] for i in range(160)]
    # items of one text cluster share their first code token
    for g in range(4):
        assert len(set(first[g * 40:(g + 1) * 40])) == 1
    assert len(set(first[::40])) == 4


def test_collaborative_index_clusters_co_consumed_items():
    rng = np.random.default_rng(1)
    seqs = []
    for u in range(60):  # two communities: items 0-19 and 20-39 never co-occur
        base = 0 if u % 2 == 0 else 20
        seqs.append(rng.choice(np.arange(base, base + 20), size=8, replace=False))
    ix = collaborative_index(seqs, 40, n_clusters=2, leaf_size=20, seed=0)
    top = [ix.tokens[i][0] for i in range(40)]
    assert len(set(top[:20])) == 1 and len(set(top[20:])) == 1 and top[0] != top[20]
    # deterministic
    assert collaborative_index(seqs, 40, n_clusters=2, leaf_size=20, seed=0).tokens == ix.tokens


def test_collaborative_index_handles_items_without_cooccurrence():
    ix = collaborative_index([np.array([0, 1])], 30, n_clusters=3, leaf_size=4)
    assert ix.n_items == 30  # isolated items still get unique ids


def test_build_index_dispatch_and_errors():
    seqs = [np.array([0, 1, 2])]
    assert build_index("random", seqs, 5).scheme == "random"
    with pytest.raises(ValueError, match="unknown indexing"):
        build_index("nope", seqs, 5)
    with pytest.raises(ValueError, match="needs the item texts"):
        build_index("semantic", seqs, 5)


# ---- trie -------------------------------------------------------------------------------
EOS = 1


@st.composite
def item_sets(draw):
    n = draw(st.integers(1, 25))
    seqs = draw(st.lists(st.lists(st.integers(2, 7), min_size=1, max_size=4), min_size=n, max_size=n,
                         unique_by=tuple))
    banned = draw(st.sets(st.integers(0, len(seqs) - 1)))
    choices = draw(st.lists(st.integers(0, 1000), min_size=10, max_size=10))
    return seqs, banned, choices


@settings(max_examples=100, deadline=None)
@given(item_sets())
def test_trie_only_yields_valid_unconsumed_items(case):
    seqs, banned, choices = case
    trie = ItemTrie(seqs, eos_id=EOS)
    b = trie.banned(banned)
    allowed_items = set(range(len(seqs))) - banned
    first = set(trie.allowed([], b))
    assert first == {s[0] for i, s in enumerate(seqs) if i in allowed_items}
    if not allowed_items:
        return
    # any walk through allowed tokens ends at a real, non-banned item
    prefix: list[int] = []
    for c in choices * 2:
        ok = trie.allowed(prefix, b)
        assert ok, f"dead end at {prefix}"
        tok = sorted(ok)[c % len(ok)]
        prefix.append(tok)
        if tok == EOS:
            break
    assert prefix[-1] == EOS
    item = trie.item_of(prefix)
    assert item is not None and item in allowed_items and list(seqs[item]) == prefix[:-1]


def test_trie_prefix_fn_and_logits_processor():
    seqs = [[5, 6], [5, 7], [8]]
    trie = ItemTrie(seqs, eos_id=EOS)
    fn = trie.prefix_fn([trie.banned([1]), None], n_skip=1, pad_id=0)
    assert sorted(fn(0, torch.tensor([0, 5]))) == [6]  # item 1 (5,7) consumed
    assert sorted(fn(1, torch.tensor([0, 5]))) == [6, 7]
    assert fn(0, torch.tensor([0, 8, EOS])) == [0]  # finished beam -> pad only
    assert fn(0, torch.tensor([0, 9])) == [0]  # off-trie prefix -> pad only
    proc = TrieLogitsProcessor(trie, [trie.banned([2])], rows_per_input=2)
    scores = proc(torch.tensor([[0], [0]]), torch.zeros(2, 10))
    assert torch.isfinite(scores[0]).nonzero().ravel().tolist() == [5]
    with pytest.raises(ValueError):
        ItemTrie([[3], [3]], eos_id=EOS)


def test_semantic_build_fits_quantizer_on_training_items_only():
    """Items without training events do not shape the codebook, yet still get codes from their text."""
    rng = np.random.default_rng(0)
    train_centers = rng.normal(size=(4, 32)) * 5
    emb = np.concatenate([c + 0.05 * rng.normal(size=(40, 32)) for c in train_centers]).astype(np.float32)
    outliers = (rng.normal(size=(40, 32)) * 50).astype(np.float32)  # a far-away cloud of new items
    all_emb = np.concatenate([emb, outliers])
    seqs = [np.arange(s, s + 10) for s in range(0, 160, 10)]  # items 0-159 are the training items
    ix = build_index("semantic", seqs, 200, embeddings=all_emb, n_subvectors=2, n_centroids=4, opq=False)
    assert ix.report["fit_items"] == 160 and ix.n_items == 200
    first = [ix.tokens[i][0] for i in range(160)]
    assert len(set(first[::40])) == 4  # the 4 training clusters keep one centroid each
    assert all(len(set(first[g * 40:(g + 1) * 40])) == 1 for g in range(4))


# ---- one token per item, hybrids, back-to-back ids ----------------------------------------
def test_item_index_is_one_token_per_item_and_round_trips(tmp_path):
    ix = build_index("item", [np.array([0, 1])], 7)
    assert ix.scheme == "item" and not ix.leaky
    assert all(len(t) == 1 for t in ix.tokens) and len(ix.vocab()) == 7
    assert ix.start_tokens() == set(ix.vocab())
    back = ItemIndex.load(ix.save(tmp_path / "ix.json"))
    assert back.tokens == ix.tokens
    # ids written back to back split into items
    assert ix.find_items(ix.item_text(3) + ix.item_text(0) + ix.item_text(3)) == [3, 0, 3]


def test_hybrid_index_appends_the_item_token_to_the_base_id():
    seqs = [np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4]), np.array([5, 6, 7, 0])]
    base = build_index("collaborative", seqs, 8, n_clusters=2, leaf_size=2)
    hyb = build_index("collaborative+item", seqs, 8, n_clusters=2, leaf_size=2)
    assert hyb.scheme == "collaborative+item"
    for i in range(8):
        assert hyb.tokens[i][:-1] == base.tokens[i] and hyb.tokens[i][-1] == f"<i_{i}>"
    starts = hyb.start_tokens()
    assert starts is not None and all(t.startswith("<c0_") for t in starts)
    text = "".join(hyb.item_text(i) for i in (4, 2, 7))
    assert hyb.find_items(text) == [4, 2, 7]
    with pytest.raises(ValueError, match="unknown hybrid"):
        build_index("sequential+item", seqs, 8)
    with pytest.raises(ValueError, match="leaky"):
        hybrid_index(sequential_index(seqs, 8))


def test_digit_ids_have_no_start_tokens():
    assert random_index(30, seed=0).start_tokens() is None
