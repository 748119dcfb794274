"""The text-embedding cache is keyed by content and checked when read (a fake model: no MiniLM)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from textrec.text.encoder import TextEncoder


class FakeModel:
    """Deterministic 4-d 'embeddings' from the text's hash; counts calls."""

    def __init__(self, scale: float = 1.0):
        self.calls = 0
        self.scale = scale
        self.seen: list[str] = []

    def get_sentence_embedding_dimension(self) -> int:
        return 4

    def encode(self, texts, **kw):
        self.calls += 1
        self.seen.extend(texts)
        return np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:4], np.uint8).astype(np.float32)
                         * self.scale for t in texts])


def encoder(model_dir, cache_dir, scale: float = 1.0) -> TextEncoder:
    enc = TextEncoder(model_dir, cache_dir=cache_dir)
    enc._model = FakeModel(scale)
    return enc


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "fake-model"
    d.mkdir()
    (d / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    return d


def test_vectors_are_keyed_by_text_not_by_dataset(model_dir, tmp_path):
    enc = encoder(model_dir, tmp_path / "c")
    a = enc.encode(["red pen", "blue pen"], progress=False)
    # a second "catalog" with other texts never gets the first one's vectors, whatever it is called
    b = enc.encode(["stapler", "red pen"], progress=False)
    assert np.allclose(b[1], a[0]) and not np.allclose(b[0], a[0])
    assert enc.last_stats.hits == 1 and enc.last_stats.encoded == 1


def test_a_changed_setting_gets_a_new_cache(model_dir, tmp_path):
    first = encoder(model_dir, tmp_path / "c")
    first.encode(["red pen"], progress=False)
    (model_dir / "sentence_bert_config.json").write_text('{"max_seq_length": 64}')
    second = encoder(model_dir, tmp_path / "c")
    assert second.identity != first.identity
    second.encode(["red pen"], progress=False)
    assert second.last_stats.hits == 0 and second._model.calls == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "rename", "nan", "dim"])
def test_a_damaged_shard_is_ignored_and_re_encoded(model_dir, tmp_path, damage, capsys):
    enc = encoder(model_dir, tmp_path / "c")
    want = enc.encode(["red pen", "blue pen"], progress=False)
    (shard,) = enc.model_cache_dir.glob("shard-*.npz")
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
        shard.write_bytes(bytes(data))
    elif damage == "truncate":
        shard.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "rename":
        shard.rename(shard.with_name("shard-" + "0" * 32 + ".npz"))
    else:  # a well-formed shard (hash in its name matches) holding bad vectors
        shard.unlink()
        vecs = np.full((2, 4), np.nan, np.float32) if damage == "nan" else np.zeros((2, 3), np.float32)
        from textrec.text.encoder import _write_shard_file

        keys = np.stack([np.frombuffer(hashlib.sha1(t.encode()).digest(), np.uint8) for t in ("red pen", "blue pen")])
        _write_shard_file(enc.model_cache_dir, keys=keys, vectors=vecs)
    fresh = encoder(model_dir, tmp_path / "c")
    got = fresh.encode(["red pen", "blue pen"], progress=False)
    assert np.allclose(got, want) and fresh.last_stats.hits == 0 and fresh._model.calls == 1
    assert "ignoring cache shard" in capsys.readouterr().err


def test_model_json_of_another_identity_disables_the_folder(model_dir, tmp_path, capsys):
    enc = encoder(model_dir, tmp_path / "c")
    enc.encode(["red pen"], progress=False)
    meta = enc.model_cache_dir / "model.json"
    info = json.loads(meta.read_text())
    assert info["identity"] == enc.identity and info["dim"] == 4
    meta.write_text(json.dumps({**info, "identity": "someone-else"}))
    fresh = encoder(model_dir, tmp_path / "c")
    fresh.encode(["red pen"], progress=False)
    assert fresh.last_stats.hits == 0 and "bad model.json" in capsys.readouterr().err


def test_the_model_sees_sanitized_text_but_the_key_is_the_text(model_dir, tmp_path):
    enc = encoder(model_dir, tmp_path / "c")
    raw = "Pen [SEP] red\x00 \u202e" + "x" * 50_000
    enc.encode([raw], progress=False)
    (seen,) = enc._model.seen
    assert "[SEP]" not in seen and "\x00" not in seen and "\u202e" not in seen and len(seen) <= 20_000
    enc.encode([raw], progress=False)
    assert enc.last_stats.hits == 1
