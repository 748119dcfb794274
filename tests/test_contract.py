"""The one contract, checked for every name in ``textrec.registry.MODELS``.

Recommenders: fit on tiny data, score shape, history masked, original ids out, save -> load
(through ``textrec.load``) gives identical scores, unknown ids fail clearly. Explanation models:
save -> load gives identical explanations. A registered name without a case here fails, so a
new model cannot skip the contract.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import textrec
from textrec.artifact import ArtifactError
from textrec.catalog import UnknownIdError
from textrec.data import RecDataset
from textrec.data.splits import leave_one_out
from textrec.models.base import Recommender, TrainView
from textrec.registry import MODELS, model_class

torch.set_num_threads(1)

SEQ = {"backbone": {"hidden": 16, "layers": 1, "heads": 1, "ff": 32, "max_len": 8},
       "trainer": {"epochs": 2, "max_len": 8, "batch_size": 32, "patience": 2}}

#: tiny constructor arguments per registered recommender (None: built by a helper below)
RECOMMENDERS: dict[str, dict | None] = {
    "Popularity": {},
    "ItemKNN": {"k": 10},
    "EASE": {"lam": 10.0},
    "MarkovChain": {},
    "SASRec": SEQ,
    "TextKNN": {},
    "MultVAE": {"hidden": [16], "latent": 4, "epochs": 2, "batch_size": 16},
    "MultDAE": {"hidden": [16], "latent": 4, "epochs": 2, "batch_size": 16},
    "PersonaRec": {**SEQ, "n_personas": 2},
    "GHRS": {"n_clusters": 3, "ae_epochs": 20},
    "VQRec": {**SEQ, "n_subvectors": 4, "n_centroids": 16},
    "TextFusion": {**SEQ, "n_subvectors": 4, "n_centroids": 16, "ease_lam": 10.0},
    "P5": {"model_config": {"preset": "tiny", "vocab_size": 300, "dropout": 0.0},
           "train_config": {"epochs": 1, "batch_size": 32}, "k": 5},
    "QueryRec": {"query": "keywords", "max_history": 3},
    "TextFusionZeroShot": None,  # reads a pretrained folder: _zero_shot_args
}

#: registered explanation models -> the pipeline variant that trains one
EXPLAINERS = {"PETER": "peter", "ERRA": "erra", "ERRA-T5": "erra_t5", "ERRA-LM": None, "ERRA-Extract": None,
              "Explainer": "erra"}
#: names checked elsewhere, with the test that does it
ELSEWHERE = {"ERRA-LM": "tests/test_explain.py (needs an LLM; the tiny-Llama LM test covers it)",
             "ERRA-Extract": "tests/test_explain_trust.py (quotes the item's reviews, so it predicts with its data "
                             "attached: the round trip through the one loader is tested there)"}


def _zero_shot_args(tmp_path) -> dict:
    """A tiny TextFusion pretrained on another domain and saved: what the zero-shot model starts from."""
    from textrec.models.fusion import TextFusionRec
    from textrec.models.transfer import pretrain_views

    source = TrainView.from_split(leave_one_out(_dataset("contract-source")), with_text=True)
    pre = TextFusionRec(**RECOMMENDERS["TextFusion"])
    pretrain_views(pre, [source], progress=False)
    pre.save_pretrained(tmp_path / "pre")
    return {"pretrained": str(tmp_path / "pre")}


def _dataset(name: str = "contract") -> RecDataset:
    rng = np.random.default_rng(0)
    n_items = 24
    rows = [(f"u{u}", f"item-{(s + t) % n_items}", float(t)) for u in range(40)
            for s in [int(rng.integers(n_items))] for t in range(6)]
    items = pd.DataFrame({"item_id": [f"item-{i}" for i in range(n_items)],
                          "title": [f"{['flute', 'cello', 'harp'][i % 3]} model {i}" for i in range(n_items)]})
    return RecDataset.from_frames(name, pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]),
                                  items, text_fields=["title"])


@pytest.fixture(scope="module")
def view() -> TrainView:
    return TrainView.from_split(leave_one_out(_dataset()), with_text=True)


def test_every_registered_name_has_a_contract_case():
    covered = set(RECOMMENDERS) | set(EXPLAINERS)
    missing = sorted(set(MODELS) - covered)
    assert not missing, f"registered models without a contract case: {missing}; add them to tests/test_contract.py"


@pytest.mark.parametrize("name", sorted(RECOMMENDERS))
def test_recommender_contract(name, view, tmp_path):
    cls = model_class(name)
    assert issubclass(cls, Recommender)
    kwargs = RECOMMENDERS[name] if RECOMMENDERS[name] is not None else _zero_shot_args(tmp_path)
    model = cls(**kwargs).fit(view, progress=False)
    hist = [np.array([0, 1, 2]), np.array([5])]
    scores = model.score(np.array([0, 1]), hist)
    assert tuple(scores.shape) == (2, view.n_items)

    idx, _ = model.recommend(hist[0], k=5)
    assert not set(idx.tolist()) & {0, 1, 2}  # history masked
    recs = model.recommend_ids(history_ids=["item-0", "item-1"], k=3)
    assert recs and all(r["id"].startswith("item-") and r["id"] not in ("item-0", "item-1") for r in recs)
    assert all(r["title"] for r in recs)
    by_user = model.recommend_ids(user_id="u3", k=3)
    assert by_user and all(r["id"] not in {model.catalog.id(i) for i in model.users.history("u3")} for r in by_user)

    with pytest.raises(UnknownIdError, match="unknown item id 'nope'"):
        model.recommend_ids(history_ids=["nope"], k=3)
    with pytest.raises(UnknownIdError, match="unknown user id 'ghost'"):
        model.recommend_ids(user_id="ghost", k=3)

    folder = model.save_pretrained(tmp_path / name)
    assert (folder / "manifest.json").is_file() and (folder / "catalog.json").is_file()
    assert json.loads((folder / "config.json").read_text())["model_type"] == name
    back = textrec.load(folder)
    assert type(back) is cls and back.catalog == model.catalog
    torch.testing.assert_close(back.score(np.array([0, 1]), hist), scores)
    assert back.recommend_ids(user_id="u3", k=3) == by_user


def test_artifact_tampering_is_caught(view, tmp_path):
    model = model_class("EASE")(lam=10.0).fit(view, progress=False)
    folder = model.save_pretrained(tmp_path / "ease")
    cat = json.loads((folder / "catalog.json").read_text())
    cat["ids"] = cat["ids"][::-1]  # a reversed catalog: right size, wrong ids
    (folder / "catalog.json").write_text(json.dumps(cat))
    with pytest.raises(ArtifactError, match=r"catalog.json: .*sha256"):
        textrec.load(folder)

    folder = model.save_pretrained(tmp_path / "ease2")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"model.safetensors: size"):
        textrec.load(folder)

    folder = model.save_pretrained(tmp_path / "ease3")
    (folder / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        textrec.load(folder)


def test_config_types_are_checked(view, tmp_path):
    from textrec.artifact import write_manifest

    model = model_class("MarkovChain")().fit(view, progress=False)
    folder = model.save_pretrained(tmp_path / "mc")
    body = json.loads((folder / "config.json").read_text())
    body["config"]["L"] = "abc"
    (folder / "config.json").write_text(json.dumps(body))
    write_manifest(folder, len(model.catalog), model.catalog.sha256())  # consistent files, bad value
    with pytest.raises(ArtifactError, match=r"field 'L' = 'abc' is not int"):
        textrec.load(folder)


def test_interrupted_save_leaves_the_old_artifact(view, tmp_path):
    model = model_class("Popularity")().fit(view, progress=False)
    folder = model.save_pretrained(tmp_path / "pop")
    before = (folder / "manifest.json").read_text()

    def boom(path):
        raise KeyboardInterrupt

    model.save_extra = boom  # interrupt in the middle of writing the new folder
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(folder)
    assert (folder / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pop"]  # no temp folder left behind
    textrec.load(folder)


def test_legacy_and_foreign_folders_say_what_they_are(tmp_path):
    (tmp_path / "p5").mkdir()
    (tmp_path / "p5" / "querywriter.json").write_text("{}")
    with pytest.raises(ArtifactError, match="Rec-R1 query writer"):
        textrec.load(tmp_path / "p5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="not a textrec model folder"):
        textrec.load(tmp_path / "empty")


@pytest.mark.parametrize("name", sorted(n for n, v in EXPLAINERS.items() if v))
def test_explainer_contract(name, tmp_path):
    from test_explain import RECIPE, HashEncoder, make_dataset

    from textrec.explain.pipeline import Explainer, build_data, train_variant

    data = build_data(make_dataset(), RECIPE, encoder=HashEncoder(), progress=False)
    model, _ = train_variant(data, EXPLAINERS[name], RECIPE, progress=False, trainer_overrides={"epochs": 1})
    test = data.examples["test"][:4]
    texts, _ = model.predict(test, num_beams=1)
    if name == "Explainer":
        folder = Explainer(data, model).save(tmp_path / name)
        back = Explainer.load(folder, dataset=make_dataset(), encoder=HashEncoder(), progress=False)
        assert back.model.predict(test, num_beams=1)[0] == texts
        assert json.loads((folder / "config.json").read_text())["model_type"] == "Explainer"
        return
    folder = model.save_pretrained(tmp_path / name)
    assert json.loads((folder / "config.json").read_text())["model_type"] == name
    back = textrec.load(folder)
    assert type(back) is model_class(name)
    assert back.predict(test, num_beams=1)[0] == texts


def test_textrec_01_core_folder_still_loads_with_a_warning(view, tmp_path):
    from safetensors.torch import save_file

    from textrec.artifact import LegacyArtifactWarning

    model = model_class("MarkovChain")(alpha=0.05).fit(view, progress=False)
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "MarkovChain", **model.get_config()}))
    save_file({k: v.contiguous() for k, v in model.state_tensors().items()}, str(folder / "model.safetensors"))
    with pytest.warns(LegacyArtifactWarning, match="textrec 0.1 core model"):
        back = textrec.load(folder)
    hist = [np.array([3, 4])]
    torch.testing.assert_close(back.score(np.array([0]), hist), model.score(np.array([0]), hist))
