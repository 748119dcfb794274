"""`textrec serve`: every endpoint, every bad input, the token rules, persistence across restarts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from serve_fixtures import TOKEN, FakeExplainer, build_folders  # noqa: E402

from textrec.serve.app import create_app  # noqa: E402
from textrec.serve.backends import ServedArtifact  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_folders(tmp_path_factory.mktemp("serve"))


@pytest.fixture()
def client(folders, tmp_path):
    # each test gets its own copy, since adding items rewrites the folder
    vq = tmp_path / "vq"
    shutil.copytree(folders["vq"], vq)
    arts = [ServedArtifact.load(vq), ServedArtifact.load(folders["sas"], name="sas")]
    arts[0].explainer = FakeExplainer()
    return TestClient(create_app(arts, token=TOKEN), raise_server_exceptions=False)


def test_health_lists_capabilities(client):
    r = client.get("/health")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert models["vq"]["capabilities"] == {"recommend": True, "users": True, "add_items": True,
                                            "delete_items": True, "explain": True, "query": True}
    assert models["sas"]["capabilities"]["add_items"] is False
    assert models["sas"]["capabilities"]["explain"] is False
    assert models["vq"]["n_items"] == 24


def test_recommend_user_and_history(client):
    r = client.post("/recommend", json={"user": "u3", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 5
    assert all(it["item_id"].startswith("i") and " number " in it["title"] for it in body["items"])
    seen = {h["item_id"] for h in body["history"]}
    assert not seen & {it["item_id"] for it in body["items"]}  # history excluded
    assert [it["rank"] for it in body["items"]] == [1, 2, 3, 4, 5]
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    r = client.post("/recommend", json={"history": ["i1", "i2"], "k": 3, "exclude_history": False, "model": "sas"})
    assert r.status_code == 200 and r.json()["model"] == "sas" and len(r.json()["items"]) == 3


def test_items_search_by_title(client):
    r = client.get("/items", params={"q": "harp 2"})
    assert r.status_code == 200
    titles = [it["title"] for it in r.json()]
    assert titles and all("harp" in t and "2" in t for t in titles)
    assert client.get("/items", params={"q": "tuba"}).json() == []


@pytest.mark.parametrize("body, field", [
    ({"user": "u1", "k": 0}, "k"),
    ({"user": "u1", "k": 101}, "k"),
    ({"user": "u1", "k": "ten"}, "k"),
    ({"user": "u1", "k": "10"}, "k"),
    ({"user": "u1", "k": True}, "k"),
    ({"user": "u1", "k": 5.0}, "k"),
    ({"user": "u1", "k": 5.5}, "k"),
    ({"user": 7}, "user"),
    ({"history": [1, 2]}, "history.0"),
    ({"user": "u1", "exclude_history": 1}, "exclude_history"),
    ({"user": "u1", "exclude_history": "true"}, "exclude_history"),
    ({"history": []}, "history"),
    ({"history": ["i1"] * 201}, "history"),
    ({"history": ["bad id!"]}, "history.0"),
    ({"user": "x" * 65}, "user"),
    ({"user": "u1", "history": ["i1"]}, "body"),
    ({}, "body"),
    ({"user": "u1", "colour": "red"}, "colour"),
    ({"user": "u1", "exclude_history": "maybe"}, "exclude_history"),
    ({"user": "u1", "model": "../etc"}, "model"),
])
def test_recommend_rejects_bad_input_naming_the_field(client, body, field):
    r = client.post("/recommend", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert field in [e["field"] for e in errors]
    assert r.json()["detail"].startswith("invalid request:")
    assert "Traceback" not in r.text


def test_malformed_json_and_wrong_types_are_422(client):
    r = client.post("/recommend", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text
    r = client.post("/recommend", json=["a", "list"])
    assert r.status_code == 422
    r = client.post("/recommend", content=b"\xff\xfe\x00", headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and "Traceback" not in r.text  # bytes that are not text at all
    r = client.get("/items", params={"q": "x" * 201})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "q"
    r = client.get("/items")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "q"


def test_unknown_ids_are_404_naming_the_id(client):
    r = client.post("/recommend", json={"user": "nobody"})
    assert r.status_code == 404 and "'nobody'" in r.json()["detail"]
    r = client.post("/recommend", json={"history": ["i1", "i999"]})
    assert r.status_code == 404 and "'i999'" in r.json()["detail"]
    r = client.post("/recommend", json={"user": "u1", "model": "nope"})
    assert r.status_code == 404 and "'nope'" in r.json()["detail"]
    r = client.post("/explain", json={"user": "u1", "item": "i404"})
    assert r.status_code == 404 and "'i404'" in r.json()["detail"]
    r = client.post("/explain", json={"user": "ghost", "item": "i1"})
    assert r.status_code == 404 and "'ghost'" in r.json()["detail"]


def test_explain_and_no_explainer(client):
    r = client.post("/explain", json={"user": "u1", "item": "i2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["explanation"] and body["aspects"] == ["sound"]
    assert body["cited"][0]["sentence_id"] == 7 and body["item"]["title"] == "harp number 2"
    r = client.post("/explain", json={"user": "u1", "item": "i2", "model": "sas"})
    assert r.status_code == 404 and "no explainer loaded" in r.json()["detail"]
    assert "--explainer sas=DIR" in r.json()["detail"]


def test_query_writes_and_retrieves(client):
    r = client.post("/query", json={"user": "u1", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "raw-history" and body["query"]
    # the raw-history query under the default 8-word budget: the newest words of the context titles
    assert body["context"] and body["query"] == " ".join(" ".join(body["context"]).split()[-8:])
    history = set(client.post("/recommend", json={"user": "u1", "k": 1}).json()["history"][i]["item_id"]
                  for i in range(len(body["context"])))
    assert body["items"] and not history & {it["item_id"] for it in body["items"]}
    r = client.post("/query", json={"history": ["i0"], "k": 3})
    assert r.status_code == 200 and "flute" in r.json()["query"]


def test_add_item_token_rules(client):
    new = {"title": "golden harp", "description": "a concert harp"}
    assert client.post("/items", json=new).status_code == 401
    r = client.post("/items", json=new, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    r = client.post("/items", json=new, headers={"Authorization": "Basic " + TOKEN})
    assert r.status_code == 401
    assert client.get("/health").json()["models"][0]["n_items"] == 24  # nothing was added


def test_add_item_needs_token_configured(folders):
    app = create_app([ServedArtifact.load(folders["knn"])], token=None)
    r = TestClient(app).post("/items", json={"title": "x"}, headers={"Authorization": "Bearer any"})
    assert r.status_code == 403 and "disabled" in r.json()["detail"]


def test_add_item_recommendable_at_once_and_persisted(client, tmp_path):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/items", json={"item_id": "harp-new", "title": "harp number 99",
                                    "description": "a harp", "rank_for_user": "u1"}, headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["n_items"] == 25 and body["persisted"] and 1 <= body["rank_for_user"] <= 25
    # recommendable at once: with k = all items it must appear
    r = client.post("/recommend", json={"history": ["i2", "i5"], "k": 25})
    assert "harp-new" in [it["item_id"] for it in r.json()["items"]]
    assert client.post("/recommend", json={"history": ["harp-new"], "k": 2}).status_code == 200
    assert client.get("/items", params={"q": "harp 99"}).json()[0]["item_id"] == "harp-new"
    # duplicate id: 409; bad inputs: 422
    r = client.post("/items", json={"item_id": "harp-new", "title": "again"}, headers=auth)
    assert r.status_code == 409 and "'harp-new'" in r.json()["detail"]
    # the same id and text again (a retried request): 200 with the existing item, nothing added
    r = client.post("/items", json={"item_id": "harp-new", "title": "harp number 99", "description": "a harp"},
                    headers=auth)
    assert r.status_code == 200 and r.json()["created"] is False and r.json()["n_items"] == 25
    for bad, field in [({"title": ""}, "title"), ({"title": "t" * 201}, "title"),
                       ({"title": "ok", "description": "d" * 4001}, "description"),
                       ({"title": "ok", "item_id": "a b"}, "item_id"), ({"name": "x"}, "title")]:
        r = client.post("/items", json=bad, headers=auth)
        assert r.status_code == 422 and field in [e["field"] for e in r.json()["errors"]], (bad, r.text)
    r = client.post("/items", json={"title": "x", "model": "sas"}, headers=auth)
    assert r.status_code == 404 and "cannot add items" in r.json()["detail"]
    # survives a restart: a fresh load of the folder has the item and scores it
    folder = tmp_path / "vq"
    again = ServedArtifact.load(folder)
    assert len(again.catalog) == 25 and again.catalog.index("harp-new") == 24
    assert again.model.n_items == 25 and again.catalog.title(24) == "harp number 99"
    assert not list(tmp_path.glob(".vq.*"))  # no temp or old folder left behind
    cat = json.loads((folder / "catalog.json").read_text())
    assert cat["ids"][-1] == "harp-new" and cat["text"][-1] == "harp number 99. a harp"


def test_textknn_adds_items_and_faiss_ranking_matches_full(folders, tmp_path):
    shutil.copytree(folders["knn"], tmp_path / "knn")
    full = ServedArtifact.load(tmp_path / "knn")
    indexed = ServedArtifact.load(tmp_path / "knn", faiss_min_items=1)
    assert full.ranking == "full" and indexed.ranking == "index-scan"
    hist = np.array([1, 4, 7])
    a = [r.index for r in full.recommend(hist, 5)]
    b = [r.index for r in indexed.recommend(hist, 5)]
    assert a == b and not set(a) & set(hist.tolist())
    idx = indexed.add_item("cello-x", "cello number 77", "cello number 77")
    assert idx == 24 and indexed.ranking == "index-scan"
    assert 24 in [r.index for r in indexed.recommend(np.array([1]), 25)]


def test_vector_index_ivf_close_to_exact():
    from textrec.serve.vector_index import VectorIndex

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    exact = VectorIndex(x)
    ivf = VectorIndex(x, exact_max=1000, nprobe=64)
    assert exact.kind == "scan" and ivf.kind == "ivf"
    q = rng.normal(size=16).astype(np.float32)
    e, _ = exact.search(q, 10, exclude=np.array([0, 1]))
    i, _ = ivf.search(q, 10, exclude=np.array([0, 1]))
    assert len(set(e) & set(i)) >= 8
    truth = np.argsort(-(x @ q), kind="stable")
    assert list(e) == [t for t in truth if t not in (0, 1)][:10]


def test_failed_save_leaves_memory_and_disk_as_they_were(folders, tmp_path, monkeypatch):
    shutil.copytree(folders["vq"], tmp_path / "vq")
    art = ServedArtifact.load(tmp_path / "vq")
    before = sorted(p.name for p in (tmp_path / "vq").iterdir())

    def broken_save(path):
        raise OSError("disk full")

    monkeypatch.setattr(art.model, "save_extra", broken_save)  # fails inside the folder write
    with pytest.raises(OSError):
        art.add_item("lost", "harp number 50", "harp number 50")
    assert not art.has_item("lost") and len(art.catalog) == 24 and art.model.n_items == 24
    assert sorted(p.name for p in (tmp_path / "vq").iterdir()) == before
    assert art.recommend(np.array([1, 2]), 3)


def test_damaged_or_foreign_folders_are_clear_errors(folders, tmp_path):
    from textrec.artifact import ArtifactError

    shutil.copytree(folders["sas"], tmp_path / "sas")
    cat = json.loads((tmp_path / "sas" / "catalog.json").read_text())
    (tmp_path / "sas" / "catalog.json").write_text(json.dumps({"ids": cat["ids"][:-1]}))
    with pytest.raises(ArtifactError, match="catalog.json"):
        ServedArtifact.load(tmp_path / "sas")
    with pytest.raises(ArtifactError, match="no such model folder"):
        ServedArtifact.load(tmp_path / "missing")
    art = ServedArtifact.load(folders["sas"])
    assert art.catalog.search("cello 1", 3)[0] == 1


def test_openapi_and_page(client):
    spec = client.get("/openapi.json").json()
    assert {"/health", "/items", "/recommend", "/explain", "/query"} <= set(spec["paths"])
    assert "post" in spec["paths"]["/items"] and "get" in spec["paths"]["/items"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text  # works offline
    assert client.get("/static/docs.js").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "<title>textrec</title>" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_cli_registers_serve():
    from textrec.cli import build_parser

    args = build_parser().parse_args(["serve", "a", "name=b", "--port", "8123"])
    assert args.artifacts == ["a", "name=b"] and args.host == "127.0.0.1" and args.port == 8123
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "a", "--port", "70000"])


def test_random_bodies_never_crash_the_server(client):
    """Fuzz every JSON endpoint with random bodies: only 2xx/401/403/404/409/422, never a 500."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=80), st.sampled_from(["u1", "i1", "i2", "harp", "", "vq", "sas"]))
    values = st.one_of(scalars, st.lists(scalars, max_size=5), st.dictionaries(st.text(max_size=5), scalars, max_size=3))
    keys = st.sampled_from(["user", "history", "k", "exclude_history", "model", "item", "title", "description",
                            "item_id", "rank_for_user", "zzz"])
    bodies = st.one_of(st.dictionaries(keys, values, max_size=6), values)
    paths = st.sampled_from(["/recommend", "/explain", "/query", "/items"])

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(paths, bodies, st.booleans())
    def check(path, body, auth):
        headers = {"Authorization": "Bearer " + TOKEN} if auth else {}
        r = client.post(path, json=body, headers=headers)
        assert r.status_code in (200, 201, 401, 403, 404, 409, 422), (path, body, r.status_code, r.text)
        assert "Traceback" not in r.text and isinstance(r.json()["detail" if r.status_code >= 400 else "model"], str)

    check()
    # what JSON libraries send for non-finite floats
    for raw in (b'{"user": "u1", "k": NaN}', b'{"user": "u1", "k": Infinity}', b'{"history": [NaN]}'):
        r = client.post("/recommend", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "Traceback" not in r.text


def test_query_with_a_saved_writer(folders, tmp_path):
    """A saved Rec-R1 query writer (here a tiny random Llama) writes the query the API returns."""
    from conftest import tiny_llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from textrec.query.policy import QueryWriter

    words = "flute cello harp number query : movies watched products bought the a of".split()
    words += [str(i) for i in range(30)]
    base = tiny_llama(tmp_path / "llama", words)
    writer = QueryWriter(AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base),
                         base_model=base, max_new_tokens=6)
    writer.save_pretrained(tmp_path / "writer")
    art = ServedArtifact.load(folders["vq"], query_writer=tmp_path / "writer")
    r = TestClient(create_app([art])).post("/query", json={"user": "u1", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "writer" and body["query"].strip()
