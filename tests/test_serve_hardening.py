"""`textrec serve` under hostile or careless clients, and the item lifecycle.

Body limit (413 before the body is read), authentication before parsing, strict types, HEAD,
security headers, allowed hosts, rate limit, offline docs, idempotent adds, DELETE, orphan
temporary folders, reads that never wait for a write, and a TextFusion artifact served through
``textrec.load``.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from serve_fixtures import TOKEN, build_folders  # noqa: E402

from textrec.serve.app import create_app  # noqa: E402
from textrec.serve.backends import ServedArtifact, clean_orphans  # noqa: E402
from textrec.serve.guard import GuardSettings, RateLimiter  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return build_folders(tmp_path_factory.mktemp("hard"), names=("sas", "fusion"))


@pytest.fixture()
def fusion(folders, tmp_path):
    shutil.copytree(folders["fusion"], tmp_path / "fusion")
    return ServedArtifact.load(tmp_path / "fusion", name="fusion")


def _client(art, **kw) -> TestClient:
    return TestClient(create_app([art], token=TOKEN, warm=False, **kw), raise_server_exceptions=False)


# ---- hostile bodies ------------------------------------------------------------------------
def test_body_over_limit_is_413_and_auth_comes_before_parsing(fusion):
    c = _client(fusion, guard=GuardSettings(max_body_bytes=2000))
    big = b'{"history": [' + b'"i1",' * 1000 + b'"i1"]}'
    r = c.post("/recommend", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit of 2000 bytes" in r.json()["detail"]
    r = c.post("/items", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413  # no token and too big: refused for the size, unread
    # within the limit but not even JSON: without a token it is a 401, never a parse error
    r = c.post("/items", content=b"{broken", headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    r = c.post("/items", content=b"{broken", headers={"Content-Type": "application/json", **AUTH})
    assert r.status_code == 422


def test_text_body_is_415_saying_to_send_json(fusion):
    c = _client(fusion)
    r = c.post("/recommend", content=b"user=u1", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "Content-Type: application/json" in r.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"user": "u1", "k": True}, "k"), ({"user": "u1", "k": "10"}, "k"), ({"user": "u1", "k": 5.0}, "k"),
    ({"user": "u1", "k": 3, "max_words": "4"}, "max_words"), ({"user": "u1", "max_words": 0}, "max_words"),
])
def test_every_field_is_strictly_typed(fusion, body, field):
    path = "/query" if "max_words" in body else "/recommend"
    r = _client(fusion).post(path, json=body)
    assert r.status_code == 422 and field in [e["field"] for e in r.json()["errors"]], r.text


def _serve(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    return srv, t, port


def test_declared_huge_body_is_refused_before_it_is_sent(fusion):
    """A client announcing 50 MB gets its 413 without sending one byte of the body."""
    srv, t, port = _serve(create_app([fusion], token=TOKEN, warm=False))
    try:
        for path in ("/recommend", "/items"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {50 * 2**20}\r\n\r\n".encode())
                head = s.recv(4096).decode("latin-1")
            assert head.startswith("HTTP/1.1 413"), head
            assert "connection: close" in head.lower()
        # a body without a declared length is counted as it streams and cut at the limit
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"x" * 65536
            try:
                for _ in range(40):  # 2.5 MB, over the 1 MB default
                    s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass  # the server may answer and close before the rest is sent
            head = s.recv(4096).decode("latin-1")
        assert head.startswith("HTTP/1.1 413"), head
    finally:
        srv.should_exit = True
        t.join(timeout=10)


# ---- HTTP hygiene ----------------------------------------------------------------------------
def test_head_security_headers_and_allowed_hosts(fusion):
    c = _client(fusion, guard=GuardSettings(allowed_hosts=["localhost", "127.0.0.1"]))
    for path in ("/", "/health", "/docs"):
        r = c.head(path, headers={"Host": "localhost:8000"})
        assert r.status_code == 200 and r.content == b"", path
        assert int(r.headers["content-length"]) > 0
    r = c.get("/health", headers={"Host": "127.0.0.1:8000"})
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    r = c.get("/health", headers={"Host": "evil.example"})
    assert r.status_code == 400 and "evil.example" in r.json()["detail"]
    assert r.headers["x-frame-options"] == "DENY"


def test_rate_limit_per_client(fusion):
    c = _client(fusion, guard=GuardSettings(rate=0.5, burst=3))
    codes = [c.get("/health").status_code for _ in range(5)]
    assert codes[:3] == [200] * 3 and codes[3:] == [429, 429]
    r = c.get("/health")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "per second" in r.json()["detail"]
    lim = RateLimiter(rate=2, burst=1)
    assert lim.allow("a", now=0.0) == 0 and lim.allow("a", now=0.1) > 0 and lim.allow("b", now=0.1) == 0
    assert lim.allow("a", now=0.6) == 0  # refilled after 1/rate seconds


def test_docs_page_is_packaged_and_describes_the_api(fusion):
    c = _client(fusion)
    page = c.get("/docs")
    assert page.status_code == 200 and '<script src="/static/docs.js">' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    js = c.get("/static/docs.js").text
    assert "/openapi.json" in js and "http" not in js
    spec = c.get("/openapi.json").json()
    body = spec["paths"]["/recommend"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["k"]["maximum"] == 100
    assert "delete" in spec["paths"]["/items/{item_id}"]


# ---- item lifecycle --------------------------------------------------------------------------
def test_textfusion_artifact_recommends_adds_queries_and_deletes(fusion):
    c = _client(fusion)
    assert fusion.model_type == "TextFusionRec"
    r = c.post("/recommend", json={"user": "u3", "k": 5})
    assert r.status_code == 200 and len(r.json()["items"]) == 5
    new = {"item_id": "harp-gold", "title": "golden harp number 30", "description": "a concert harp",
           "rank_for_user": "u3"}
    r = c.post("/items", json=new, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["created"] and r.json()["n_items"] == 25 and r.json()["rank_for_user"] >= 1
    r = c.post("/recommend", json={"history": ["i2"], "k": 25})
    assert "harp-gold" in [it["item_id"] for it in r.json()["items"]]
    r = c.post("/query", json={"history": ["harp-gold"], "k": 3, "max_words": 2})
    assert r.status_code == 200 and len(r.json()["query"].split()) == 2, r.text
    # delete: gone from answers and searches, unknown to requests, remembered across a restart
    assert c.delete("/items/harp-gold").status_code == 401
    r = c.delete("/items/harp-gold", headers=AUTH)
    assert r.status_code == 200 and r.json()["n_items"] == 24 and r.json()["persisted"]
    r = c.post("/recommend", json={"history": ["i2"], "k": 100})
    assert "harp-gold" not in [it["item_id"] for it in r.json()["items"]] and len(r.json()["items"]) == 23
    assert c.get("/items", params={"q": "golden harp"}).json() == []
    assert c.post("/recommend", json={"history": ["harp-gold"]}).status_code == 404
    assert c.delete("/items/harp-gold", headers=AUTH).status_code == 404
    assert c.post("/items", json=new, headers=AUTH).status_code == 409  # deleted ids are not reused
    again = ServedArtifact.load(fusion.folder)
    assert not again.has_item("harp-gold") and again.n_live_items() == 24 and len(again.catalog) == 25


def test_adds_are_idempotent_with_a_key_or_an_id(fusion):
    c = _client(fusion)
    body = {"title": "cello number 40", "description": "a cello"}
    key = {"Idempotency-Key": "form-7f3a", **AUTH}
    first = c.post("/items", json=body, headers=key)
    second = c.post("/items", json=body, headers=key)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["item"]["item_id"] == second.json()["item"]["item_id"]
    assert second.json()["created"] is False and second.json()["n_items"] == 25
    r = c.post("/items", json={"title": "another cello"}, headers=key)
    assert r.status_code == 409  # same key, other text
    # a double click sends two requests at once: one item
    body = {"item_id": "flute-twin", "title": "flute number 41"}
    out = []
    ts = [threading.Thread(target=lambda: out.append(c.post("/items", json=body, headers=AUTH).status_code))
          for _ in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert sorted(out) == [200, 201] and c.get("/health").json()["models"][0]["n_items"] == 26


def test_reads_do_not_wait_for_a_write(fusion, monkeypatch):
    """While an add is stuck inside the model, recommendations are answered from the old state."""
    c = _client(fusion)
    started, release = threading.Event(), threading.Event()
    real_deepcopy = __import__("copy").deepcopy

    def slow_copy(obj, memo=None):
        started.set()
        assert release.wait(30)
        return real_deepcopy(obj, memo)

    monkeypatch.setattr("textrec.serve.backends.copy.deepcopy", slow_copy)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", c.post("/items", json={"title": "harp number 50"},
                                                                   headers=AUTH)))
    t.start()
    assert started.wait(30)
    t0 = time.perf_counter()
    r = c.post("/recommend", json={"user": "u5", "k": 3})
    waited = time.perf_counter() - t0
    release.set()
    t.join(30)
    assert r.status_code == 200 and waited < 10  # answered while the write was held (not after 30 s)
    assert out["r"].status_code == 201 and fusion.version == 1


def test_orphan_temporary_folders_are_removed_at_start_up(folders, tmp_path):
    shutil.copytree(folders["sas"], tmp_path / "sas")
    for orphan in (".sas.tmp-abc123", ".sas.old-def456"):
        (tmp_path / orphan).mkdir()
        (tmp_path / orphan / "model.safetensors").write_bytes(b"partial")
    (tmp_path / ".other.tmp-1").mkdir()  # another artifact's: not ours to remove
    ServedArtifact.load(tmp_path / "sas")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1", "sas"]
    # killed during the swap itself: the folder is missing, the parked copy is put back
    (tmp_path / "sas").rename(tmp_path / ".sas.old-xyz")
    removed = clean_orphans(tmp_path / "sas")
    assert removed == [] and (tmp_path / "sas" / "manifest.json").is_file()


def test_precomputed_top_lists_match_direct_scoring(fusion):
    fusion.warm()
    u, hist = fusion.history_of("u7")
    cached = fusion.recommend(hist, 10, user=u)
    idx, _ = fusion.model.recommend(hist, k=10, user=u)
    assert [r.index for r in cached] == list(idx)
    assert (u, True) in fusion.state.tops and len(fusion.state.tops) == len(fusion.users)


def test_batched_requests_answer_like_single_ones(folders):
    from textrec.serve.batching import MicroBatcher

    art = ServedArtifact.load(folders["sas"])
    art.cache_tops = False
    hists = [np.array([1, 2, 3]), np.array([5]), np.array([7, 8])]
    batch = art.top_batch([(-1, h, True) for h in hists])
    for h, (idx, _) in zip(hists, batch):
        one, _ = art.top(h)
        assert list(idx) == list(one)
    import asyncio

    calls = []

    def run(items):
        calls.append(len(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [x * 2 for x in items]

    b = MicroBatcher(run)

    async def main():
        return await asyncio.gather(*(b.submit(x) for x in [1, 2, "bad", 4]), return_exceptions=True)

    res = asyncio.run(main())
    b.close()
    assert res[0] == 2 and res[1] == 4 and res[3] == 8 and isinstance(res[2], ValueError)
