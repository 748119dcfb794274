"""``textrec bench load``: throughput and latency of ``textrec serve``, and its behaviour under abuse.

    textrec bench load --sasrec DIR --fusion DIR --publish            # every scenario but explain
    textrec bench load --scenarios explain --explain-artifact DIR --explainer DIR --publish

Each scenario starts ``textrec serve`` as its own process (one uvicorn worker, 1 torch thread)
and drives it over loopback with Debian's ``wrk`` (a compiled closed-loop client: each of
``--clients`` connections sends its next request when the last is answered), ``--seconds``
per measured run after a short warm-up run. A Python client saturates a core near 600 req/s on
this kind of machine, so it cannot measure the targets; ``wrk`` is required here (never in tests).

Scenarios (result file ``load_<name>.json`` each, and ``load_summary.json`` over all):

- ``ceiling``: the same stack (uvicorn, FastAPI, the guard middleware) answering a constant JSON
  body of the size of a real answer: the most this machine can serve, measured in the same run.
- ``sasrec`` / ``fusion``: ``POST /recommend`` for random known users (k=10) on an ML-100K
  artifact; rows for the full server, without the cache, without cache and batching, and
  (``--before REV``) the server of an earlier commit: what each means bought.
- ``synthetic``: a TextKNN artifact over ``--synthetic`` random unit vectors (index ranking),
  ad-hoc histories of 20 random items drawn per request (never repeated, so never cached).
- ``explain``: ``POST /explain`` on Instruments for (user, item) pairs of held-out reviews.
- ``writes``: reader latency on the fusion artifact while 20 items are added, against the idle
  run just before; the first add included (the text encoder is loaded at start-up).
- ``hostile``: 4 clients sending 50 MB bodies (declared and chunked, one after the other for
  ``--hostile-seconds``) to ``/items`` and ``/recommend`` without a token; the server's resident
  memory against idle, time to the 413, and ``/health`` latency meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from textrec.options import add_seed_option, positive_float, positive_int
from textrec.results import add_output_options, command_line, writer_from_args

SCENARIOS = ("ceiling", "sasrec", "fusion", "synthetic", "explain", "writes", "hostile", "before")
#: the issue's targets: (min req/s, max p95 ms, max p99 ms)
TARGETS = {"ml-100k": (1000.0, 20.0, 50.0), "synthetic": (300.0, 50.0, None), "explain": (None, 300.0, None)}
SUMMARY_FILE = "load_summary.json"
DOC_START, DOC_END = "<!-- load-summary:start -->", "<!-- load-summary:end -->"
ROOT = Path(__file__).resolve().parents[2]


# ---- wrk ------------------------------------------------------------------------------------
_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f}\n', summary.requests, summary.duration,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end
'''


def _lua_str(s: str) -> str:
    return "[==[" + s + "]==]"


def lua_bodies(path: str, bodies: list[str], seed: int) -> str:
    """A wrk script POSTing a random one of ``bodies`` per request."""
    items = ",\n".join(_lua_str(b) for b in bodies)
    return (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nmath.randomseed({seed})\n'
            f"local bodies = {{\n{items}\n}}\n"
            f'request = function() return wrk.format(nil, "{path}", nil, bodies[math.random(#bodies)]) end\n' + _DONE)


def lua_histories(n_items: int, length: int, k: int, seed: int) -> str:
    """A wrk script POSTing a fresh random history of ``length`` synthetic ids (``s0``..) per request."""
    return (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nmath.randomseed({seed})\n'
            "request = function()\n  local t = {}\n"
            f"  for i = 1, {length} do t[i] = '\"s' .. math.random(0, {n_items - 1}) .. '\"' end\n"
            f"  return wrk.format(nil, \"/recommend\", nil, '{{\"history\":[' .. table.concat(t, \",\") .. "
            f"'],\"k\":{k},\"model\":\"bench\"}}')\nend\n" + _DONE)


def run_wrk(url: str, script: str, seconds: float, clients: int, threads: int = 1) -> dict[str, Any]:
    """Run wrk; throughput, latency percentiles (ms) and errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        cmd = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency", "-s", path, url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(path)
    m = re.search(r"WRK_JSON (\{.*\})", out.stdout)
    if m is None:
        raise RuntimeError(f"wrk gave no result: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    d = json.loads(m.group(1))
    secs = d["duration_us"] / 1e6
    errors = d["status_errors"] + d["socket_errors"]
    ok = d["requests"] - d["status_errors"]
    return {"requests": d["requests"], "errors": errors, "status_errors": d["status_errors"],
            "socket_errors": d["socket_errors"], "seconds": round(secs, 2),
            "throughput_rps": round(ok / secs, 1),
            "latency_ms": {k: round(d[k] / 1000, 2) for k in ("p50", "p90", "p95", "p99", "max", "mean")}}


# ---- servers --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def _get(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class Server:
    """``textrec serve`` (or another command) in a subprocess, on a free port, until stopped."""

    def __init__(self, args: list[str], pythonpath: str | None = None, wait_warm: bool = True,
                 cmd: list[str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1"}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        cmd = cmd or [sys.executable, "-m", "textrec.cli", "serve", *args, "--port", str(self.port), "--threads", "1"]
        cmd = [c.replace("{port}", str(self.port)) for c in cmd]
        self.log = tempfile.TemporaryFile("w+")
        t0 = time.perf_counter()
        # python -m puts the working folder first on sys.path: an earlier tree must be the working
        # folder too, or the current checkout's package would be imported instead of it
        self.proc = subprocess.Popen(cmd, cwd=pythonpath or ROOT, env=env, stdout=self.log, stderr=self.log,
                                     text=True)
        self.health: dict = {}
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read()[-3000:]}")
            try:
                self.health = _get(self.url + "/health", timeout=2)
                models = self.health.get("models", [])
                if not wait_warm or all(m.get("warm", True) for m in models):
                    break
            except OSError:
                pass
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("server did not start within 600 s")
            time.sleep(0.25)
        self.startup_seconds = round(time.perf_counter() - t0, 1)

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---- request bodies -------------------------------------------------------------------------
def user_bodies(folder: Path, k: int, n: int, seed: int) -> list[str]:
    """``n`` recommend bodies for random known users of an artifact."""
    from textrec.catalog import UserTable

    users = UserTable.load(folder)
    if users is None or not len(users):
        raise ValueError(f"{folder}: no known users to request for")
    rng = random.Random(seed)
    return [json.dumps({"user": rng.choice(users.ids), "k": k, "model": "bench"}) for _ in range(n)]


def explain_bodies(explainer: Path, data_root: str | None, n: int, seed: int) -> list[str]:
    """Bodies for (user, item) pairs of held-out reviews the explainer knows (distinct pairs)."""
    from textrec.explain.pipeline import Explainer

    data = Explainer.load(explainer, data_root=data_root, progress=False).data
    rng = random.Random(seed)
    rows = [int(r) for r in data.split.test]
    rng.shuffle(rows)
    r = data.reviews
    pairs = list(dict.fromkeys((str(data.user_ids[r["user"].iat[i]]), str(data.item_ids[r["item"].iat[i]]))
                               for i in rows))[:n]
    return [json.dumps({"user": u, "item": i, "model": "bench"}) for u, i in pairs]


def synthetic_artifact(n_items: int, folder: Path, dim: int = 384, seed: int = 0) -> Path:
    """A TextKNN artifact over ``n_items`` random unit vectors (ids ``s0``.., titles ``synthetic item n``)."""
    import torch

    from textrec.catalog import Catalog
    from textrec.models.text_knn import TextKNN

    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n_items, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    model = TextKNN()
    model.item_emb = torch.from_numpy(emb)
    model.catalog = Catalog([f"s{i}" for i in range(n_items)], titles=[f"synthetic item {i}" for i in range(n_items)])
    model.save_pretrained(folder)
    return folder


def before_tree(rev: str, root: Path) -> Path:
    """The ``textrec`` package of an earlier commit, extracted under ``root`` (for a before row)."""
    dest = root / f"before-{rev[:12]}"
    if not (dest / "textrec").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev, "textrec"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


# ---- scenarios ------------------------------------------------------------------------------
def _measure(server: Server, script: str, args, warmup: float = 2.0) -> dict[str, Any]:
    run_wrk(server.url + "/", script, warmup, args.clients)
    rss0 = server.rss()
    load0 = os.getloadavg()[0]
    res = run_wrk(server.url + "/", script, args.seconds, args.clients)
    res.update(server_rss_mb={"before": rss0, "after": server.rss()}, startup_seconds=server.startup_seconds,
               load_average_1m={"before": round(load0, 2), "after": round(os.getloadavg()[0], 2)},
               clients=args.clients)
    return res


def _row_targets(res: dict, kind: str, ceiling: float | None) -> dict[str, Any]:
    rps, p95, p99 = TARGETS[kind]
    lat = res["latency_ms"]
    out = {}
    if rps is not None:
        out["throughput"] = {"target": f">= {rps:g} req/s", "value": res["throughput_rps"],
                             "met": res["throughput_rps"] >= rps}
    if p95 is not None:
        out["p95"] = {"target": f"<= {p95:g} ms", "value": lat["p95"], "met": lat["p95"] <= p95}
    if p99 is not None:
        out["p99"] = {"target": f"<= {p99:g} ms", "value": lat["p99"], "met": lat["p99"] <= p99}
    out["errors"] = {"target": "0", "value": res["errors"], "met": res["errors"] == 0}
    if ceiling:
        res["ratio_to_ceiling"] = round(res["throughput_rps"] / ceiling, 3)
    return out


def scenario_ceiling(args) -> dict:
    """The constant-body server."""
    bodies = [json.dumps({"user": str(i), "k": 10, "model": "bench"}) for i in range(200)]
    srv = Server([], cmd=[sys.executable, "-c", "import uvicorn; from textrec.benchmarks.ceiling_app import ceiling_app; "
                                               "uvicorn.run(ceiling_app(), host='127.0.0.1', port={port}, "
                                               "log_level='warning', server_header=False)"])
    try:
        res = _measure(srv, lua_bodies("/recommend", bodies, args.seed), args)
    finally:
        srv.stop()
    return {"models": {"constant body": res}, "endpoint": "POST /recommend (constant 1.2 kB JSON answer)"}


def _recommend_rows(args, folder: Path, ceiling: float | None, label: str) -> dict:
    bodies = user_bodies(folder, 10, 2000, args.seed)
    script = lua_bodies("/recommend", bodies, args.seed)
    variants = [("full server (cache + batching)", []), ("no cache (batching only)", ["--no-cache"]),
                ("no cache, no batching", ["--no-cache", "--no-batching"])]
    rows: dict[str, Any] = {}
    for name, flags in variants:
        srv = Server([f"bench={folder}", *flags])
        try:
            rows[name] = _measure(srv, script, args)
            rows[name]["n_items"] = srv.health["models"][0]["n_items"]
        finally:
            srv.stop()
        rows[name]["targets"] = _row_targets(rows[name], "ml-100k", ceiling)
    return {"models": rows, "artifact": str(folder), "endpoint": "POST /recommend",
            "request": "random known user per request (2,000 drawn with the seed), k=10"}


def scenario_synthetic(args, ceiling: float | None) -> dict:
    tmp = tempfile.mkdtemp(prefix="textrec-load-", dir=args.work_dir)
    try:
        t0 = time.perf_counter()
        folder = synthetic_artifact(args.synthetic, Path(tmp) / "synthetic")
        built = round(time.perf_counter() - t0, 1)
        script = lua_histories(args.synthetic, 20, 10, args.seed)
        rows: dict[str, Any] = {}
        for name, flags in [("full server (batched bf16 scan)", []), ("no batching", ["--no-batching"])]:
            srv = Server([f"bench={folder}", *flags])
            try:
                rows[name] = _measure(srv, script, args)
                rows[name]["ranking"] = srv.health["models"][0]["ranking"]
            finally:
                srv.stop()
            rows[name]["targets"] = _row_targets(rows[name], "synthetic", ceiling)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"models": rows, "n_items": args.synthetic, "artifact_build_seconds": built,
            "artifact": f"synthetic TextKNN, {args.synthetic} random 384-d unit vectors",
            "endpoint": "POST /recommend", "request": "a fresh random history of 20 items per request, k=10"}


def scenario_before(args, ceiling: float | None) -> dict:
    """The server of an earlier commit, same requests as the sasrec and synthetic scenarios."""
    tree = str(before_tree(args.before, Path(args.work_dir)))
    rows: dict[str, Any] = {}
    sas = Path(args.sasrec)
    srv = Server([f"bench={sas}"], pythonpath=tree, wait_warm=False)
    try:
        rows["ML-100K SASRec"] = _measure(srv, lua_bodies("/recommend", user_bodies(sas, 10, 2000, args.seed), args.seed),
                                          args)
    finally:
        srv.stop()
    rows["ML-100K SASRec"]["targets"] = _row_targets(rows["ML-100K SASRec"], "ml-100k", ceiling)
    tmp = tempfile.mkdtemp(prefix="textrec-load-", dir=args.work_dir)
    try:
        folder = synthetic_artifact(args.synthetic, Path(tmp) / "synthetic")
        srv = Server([f"bench={folder}"], pythonpath=tree, wait_warm=False)
        try:
            name = f"synthetic {args.synthetic:,} items"
            rows[name] = _measure(srv, lua_histories(args.synthetic, 20, 10, args.seed), args)
            rows[name]["ranking"] = srv.health["models"][0]["ranking"]
        finally:
            srv.stop()
        rows[name]["targets"] = _row_targets(rows[name], "synthetic", ceiling)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"models": rows, "commit": args.before, "endpoint": "POST /recommend",
            "request": "as in the sasrec and synthetic scenarios"}


def scenario_explain(args) -> dict:
    bodies = explain_bodies(Path(args.explainer), args.data_root, 3000, args.seed)
    script = lua_bodies("/explain", bodies, args.seed)
    rows = {}
    for clients in sorted({1, args.explain_clients}):
        srv = Server([f"bench={args.explain_artifact}", "--explainer", f"bench={args.explainer}",
                      *(["--data-root", args.data_root] if args.data_root else [])])
        try:
            sub = argparse.Namespace(**{**vars(args), "clients": clients})
            rows[f"{clients} client(s)"] = _measure(srv, script, sub, warmup=1.0)
        finally:
            srv.stop()
        rows[f"{clients} client(s)"]["targets"] = _row_targets(rows[f"{clients} client(s)"], "explain", None)
    return {"models": rows, "endpoint": "POST /explain", "artifact": str(args.explain_artifact),
            "explainer": str(args.explainer),
            "request": f"random one of {len(bodies)} distinct (user, item) pairs of held-out reviews "
                       "(a pair repeats rarely, so most answers are computed, not cached)"}


def _post(url: str, body: dict, headers: dict) -> tuple[int, float]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            code = r.status
            r.read()
    except urllib.error.HTTPError as e:
        code = e.code
    return code, time.perf_counter() - t0


def scenario_writes(args) -> dict:
    tmp = tempfile.mkdtemp(prefix="textrec-load-", dir=args.work_dir)
    folder = Path(tmp) / "fusion"
    shutil.copytree(args.fusion, folder)
    script = lua_bodies("/recommend", user_bodies(folder, 10, 2000, args.seed), args.seed)
    srv = Server([f"bench={folder}", "--token", "bench-token"])
    try:
        idle = _measure(srv, script, args)
        adds: list[dict] = []

        def adder() -> None:
            for n in range(args.adds):
                code, secs = _post(srv.url + "/items", {"item_id": f"bench-new-{n}", "title": f"New Movie {n} (2026)",
                                                        "description": "2026. Animation, Comedy"},
                                   {"Authorization": "Bearer bench-token"})
                adds.append({"status": code, "seconds": round(secs, 3), "at": time.perf_counter()})

        run_wrk(srv.url + "/", script, 2.0, args.clients)
        t = threading.Thread(target=adder)
        t0 = time.perf_counter()
        t.start()
        during = run_wrk(srv.url + "/", script, args.seconds, args.clients)
        t1 = time.perf_counter()
        t.join()
        n_items = _get(srv.url + "/health")["models"][0]["n_items"]
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    in_window = sum(1 for a in adds if a["at"] <= t1)
    ratio = round(during["latency_ms"]["p99"] / idle["latency_ms"]["p99"], 2)
    return {"models": {"idle": idle, "during adds": during},
            "adds": {"n": len(adds), "completed_during_reads": in_window, "statuses": sorted({a["status"] for a in adds}),
                     "seconds": [a["seconds"] for a in adds], "first_add_seconds": adds[0]["seconds"] if adds else None,
                     "all_adds_seconds": round(max(a["at"] for a in adds) - t0, 2) if adds else None},
            "n_items_after": n_items, "p99_ratio": ratio,
            "targets": {"reader_p99_during_adds": {"target": "<= 2x idle p99", "value": ratio, "met": ratio <= 2.0},
                        "adds_ok": {"target": "all 201", "value": sorted({a["status"] for a in adds}),
                                    "met": all(a["status"] == 201 for a in adds)}},
            "endpoint": "POST /recommend (readers) + POST /items (one writer)", "artifact": str(args.fusion)}


def _hostile_client(port: int, path: str, size: int, chunked: bool, out: list) -> None:
    """Send a ``size``-byte body (declared or chunked) as fast as the server takes it; record the answer."""
    import select

    t0 = time.perf_counter()
    reply, sent = b"", 0
    chunk = b"[" + b"1," * (2**19 - 1) + b"1"  # 1 MB
    data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
            s.sendall(head.encode())
            while sent < size:
                if select.select([s], [], [], 0)[0]:
                    break  # the server answered (or closed): stop sending
                try:
                    s.sendall(data)
                except OSError:
                    break
                sent += len(chunk)
            try:
                reply = s.recv(4096)
            except OSError:
                pass
    except OSError as e:
        reply = reply or type(e).__name__.encode()
    status: Any = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else reply.decode("latin-1")[:40]
    out.append({"path": path, "chunked": chunked, "status": status, "seconds": round(time.perf_counter() - t0, 3),
                "body_sent_mb": round(sent / 2**20, 1)})


def scenario_hostile(args) -> dict:
    tmp = tempfile.mkdtemp(prefix="textrec-load-", dir=args.work_dir)
    folder = Path(tmp) / "fusion"
    shutil.copytree(args.fusion, folder)
    srv = Server([f"bench={folder}", "--token", "bench-token"])
    try:
        for _ in range(50):
            _get(srv.url + "/health")
        idle = srv.rss()
        peak = [idle]
        health: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(srv.rss())
                t0 = time.perf_counter()
                _get(srv.url + "/health", timeout=30)
                health.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.02)

        results: list[dict] = []
        sampler = threading.Thread(target=sample)
        sampler.start()
        size = 50 * 2**20
        deadline = time.perf_counter() + args.hostile_seconds

        def client(c: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                _hostile_client(srv.port, ("/items", "/recommend")[c % 2], size, bool(n % 2), results)
                n += 1

        threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        # an unauthenticated add within the body limit: refused before its body is parsed
        code, secs = _post(srv.url + "/items", {"title": "x" * 150, "description": "y" * 3900}, {})
        stop.set()
        sampler.join()
        alive = _get(srv.url + "/health")["status"]
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = round(max(peak) / idle, 3)
    h = np.array(health) if health else np.zeros(1)
    return {"models": {"server": {"idle_rss_mb": idle, "peak_rss_mb": max(peak), "peak_to_idle": ratio,
                                  "health_ms": {"p50": round(float(np.percentile(h, 50)), 2),
                                                "p99": round(float(np.percentile(h, 99)), 2),
                                                "max": round(float(h.max()), 2)}}},
            "requests": {"n": len(results), "statuses": sorted({str(r["status"]) for r in results}),
                         "seconds_p99": round(float(np.percentile([r["seconds"] for r in results], 99)), 4),
                         "chunked": sum(r["chunked"] for r in results),
                         "body_sent_mb_max": max(r["body_sent_mb"] for r in results)},
            "clients": 4, "body_mb": 50, "seconds": args.hostile_seconds,
            "unauthenticated_add": {"status": code, "seconds": round(secs, 4)}, "alive_after": alive,
            "targets": {"memory": {"target": "< 1.5x idle RSS", "value": ratio, "met": ratio < 1.5},
                        "all_refused": {"target": "every 50 MB body refused unread (413, or 401 first on /items)",
                                        "value": sorted({str(r["status"]) for r in results}),
                                        "met": all(r["status"] in (401, 413) for r in results)},
                        "auth_before_parsing": {"target": "401 without parsing", "value": code, "met": code == 401}},
            "endpoint": "POST /items and POST /recommend, 50 MB bodies, no token"}


# ---- summary --------------------------------------------------------------------------------
def summary_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per measured configuration, for the docs table."""
    rows = []
    for name in ("ceiling", "ml-100k_sasrec", "ml-100k_fusion", "synthetic_100k", "before", "instruments_explain"):
        r = results.get(name)
        if r is None:
            continue
        for row, m in r["models"].items():
            lat = m["latency_ms"]
            rows.append({"scenario": name, "row": row, "date": r.get("date"), "clients": m["clients"],
                         "req_s": m["throughput_rps"],
                         "p50_ms": lat["p50"], "p95_ms": lat["p95"], "p99_ms": lat["p99"], "errors": m["errors"],
                         "ratio_to_ceiling": m.get("ratio_to_ceiling"),
                         "targets_met": all(t["met"] for t in m.get("targets", {}).values()) if m.get("targets") else None})
    return rows


def render_summary(summary: dict[str, Any]) -> str:
    """The Markdown block docs/serving.md quotes (regenerated from ``load_summary.json``)."""
    dates = sorted({str(r.get("date"))[:10] for r in summary["rows"]})
    where = summary.get("conditions") or "holding every CPU slot of the machine"
    lines = [f"Generated from `eval/results/load_*.json` (each with its command, date and machine); runs of "
             f"{', '.join(dates)} on {summary['machine']}; {where}. "
             f"{summary['seconds']:g} s per row after a 2 s warm-up, wrk closed loop over loopback "
             "(client and server share the 2 cores).", "",
             "| scenario | configuration | clients | req/s | p50 ms | p95 ms | p99 ms | errors | / ceiling | targets |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        ratio = "" if r["ratio_to_ceiling"] is None else f"{r['ratio_to_ceiling']:.2f}"
        met = {True: "met", False: "missed", None: ""}[r["targets_met"]]
        lines.append(f"| {r['scenario']} | {r['row']} | {r['clients']} | {r['req_s']:,.1f} | {r['p50_ms']:g} | "
                     f"{r['p95_ms']:g} | {r['p99_ms']:g} | {r['errors']} | {ratio} | {met} |")
    w = summary.get("writes")
    if w:
        lines += ["", f"Writes: reader p99 {w['idle_p99_ms']:g} ms idle, {w['during_p99_ms']:g} ms while items were "
                      f"being added ({w['ratio']:g}x; target <= 2x: {'met' if w['met'] else 'missed'}); "
                      f"{w.get('adds_in_window', '?')} of the {w['adds']} adds finished inside the read window; "
                      f"the first add took {w['first_add_seconds']:g} s under the read load, all {w['adds']} "
                      f"{w.get('all_adds_seconds', '?')} s."]
    h = summary.get("hostile")
    if h:
        lines += ["", f"Hostile bodies: 4 clients x 50 MB: server RSS {h['idle_rss_mb']:g} MB idle, "
                      f"{h['peak_rss_mb']:g} MB peak ({h['ratio']:g}x; target < 1.5x: {'met' if h['met'] else 'missed'}); "
                      f"answers {', '.join(h['statuses'])}; /health p99 {h['health_p99_ms']:g} ms meanwhile."]
    return "\n".join(lines) + "\n"


def update_docs(doc: Path, summary: dict[str, Any]) -> bool:
    """Replace the generated block of ``doc`` with :func:`render_summary`; False when it has none."""
    text = doc.read_text(encoding="utf-8")
    if DOC_START not in text or DOC_END not in text:
        return False
    head, rest = text.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    from textrec.io import atomic_write_text

    atomic_write_text(doc, f"{head}{DOC_START}\n{render_summary(summary)}{DOC_END}{tail}")
    return True


# ---- command --------------------------------------------------------------------------------
def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench load``."""
    ap.description = __doc__
    ap.formatter_class = argparse.RawDescriptionHelpFormatter
    ap.add_argument("--scenarios", default="ceiling,sasrec,fusion,synthetic,writes,hostile",
                    help=f"comma-separated, from {','.join(SCENARIOS)}")
    ap.add_argument("--sasrec", help="saved ML-100K SASRec folder")
    ap.add_argument("--fusion", help="saved ML-100K TextFusion folder (also used by writes and hostile)")
    ap.add_argument("--explain-artifact", help="saved Instruments recommender folder (explain scenario)")
    ap.add_argument("--explainer", help="saved Instruments explainer folder (explain scenario)")
    ap.add_argument("--data-root", help="folder holding the shared datasets (for the explainer)")
    ap.add_argument("--synthetic", type=positive_int, default=100_000, help="items of the synthetic catalog")
    ap.add_argument("--clients", type=positive_int, default=8, help="closed-loop connections (default 8)")
    ap.add_argument("--explain-clients", type=positive_int, default=4)
    ap.add_argument("--seconds", type=positive_float, default=10.0, help="measured seconds per row (default 10)")
    ap.add_argument("--adds", type=positive_int, default=20, help="items added in the writes scenario")
    ap.add_argument("--hostile-seconds", type=positive_float, default=5.0,
                    help="how long the 4 hostile clients keep sending (default 5)")
    ap.add_argument("--before", metavar="REV",
                    help="the earlier commit whose server the 'before' scenario runs (sasrec and synthetic requests)")
    ap.add_argument("--work-dir", default=None, help="scratch folder (default: the system temp folder)")
    ap.add_argument("--update-docs", default=None, metavar="MD",
                    help="rewrite the generated block of this Markdown file (default docs/serving.md with --publish)")
    add_seed_option(ap)
    add_output_options(ap, "load")


def _summary(results: dict[str, dict], args, started: str) -> dict[str, Any]:
    import platform

    conditions = sorted({r["conditions"] for r in results.values() if r.get("conditions")})
    out: dict[str, Any] = {"benchmark": "load", "date": started, **({"conditions": "; ".join(conditions)}
                                                                    if conditions else {}),
                           "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} "
                                      f"{platform.release()}",
                           "command": command_line(), "seconds": args.seconds, "rows": summary_rows(results)}
    w = results.get("writes_under_load")
    if w:
        out["writes"] = {"idle_p99_ms": w["models"]["idle"]["latency_ms"]["p99"],
                         "during_p99_ms": w["models"]["during adds"]["latency_ms"]["p99"], "adds": w["adds"]["n"],
                         "ratio": w["p99_ratio"], "met": w["targets"]["reader_p99_during_adds"]["met"],
                         "first_add_seconds": w["adds"]["first_add_seconds"],
                         "adds_in_window": w["adds"]["completed_during_reads"],
                         "all_adds_seconds": w["adds"]["all_adds_seconds"]}
    h = results.get("hostile_bodies")
    if h:
        s = h["models"]["server"]
        out["hostile"] = {"idle_rss_mb": s["idle_rss_mb"], "peak_rss_mb": s["peak_rss_mb"], "ratio": s["peak_to_idle"],
                          "met": h["targets"]["memory"]["met"], "statuses": h["targets"]["all_refused"]["value"],
                          "health_p99_ms": s["health_ms"]["p99"]}
    return out


FILES = {"ceiling": "ceiling", "sasrec": "ml-100k_sasrec", "fusion": "ml-100k_fusion", "synthetic": "synthetic_100k",
         "explain": "instruments_explain", "writes": "writes_under_load", "hostile": "hostile_bodies",
         "before": "before"}


def run(args: argparse.Namespace) -> int:
    """Run the chosen scenarios; write ``load_<name>.json`` each and ``load_summary.json``."""
    from datetime import datetime, timezone

    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SCENARIOS]
    if bad:
        raise SystemExit(f"--scenarios: unknown {bad}; choose from {list(SCENARIOS)}")
    need = {"sasrec": ["sasrec"], "fusion": ["fusion"], "writes": ["fusion"], "hostile": ["fusion"],
            "before": ["before", "sasrec"],
            "explain": ["explain_artifact", "explainer"]}
    for s in wanted:
        for opt in need.get(s, []):
            if not getattr(args, opt):
                raise SystemExit(f"scenario '{s}' needs --{opt.replace('_', '-')}")
    if shutil.which("wrk") is None and set(wanted) - {"hostile"}:
        raise SystemExit("textrec bench load needs wrk (Debian: apt-get install -y wrk): a Python client "
                         "cannot drive more than ~600 req/s on 2 cores")
    args.work_dir = str(Path(args.work_dir or tempfile.gettempdir()).resolve())
    for opt in ("sasrec", "fusion", "explain_artifact", "explainer"):  # servers may run in another folder
        if getattr(args, opt):
            setattr(args, opt, str(Path(getattr(args, opt)).resolve()))
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    writer = writer_from_args(args, "load")
    results: dict[str, dict] = {}
    ceiling = None
    for s in wanted:
        t0 = time.perf_counter()
        print(f"load: {s} ...", file=sys.stderr, flush=True)
        try:
            if s == "ceiling":
                r = scenario_ceiling(args)
                ceiling = r["models"]["constant body"]["throughput_rps"]
            elif s in ("sasrec", "fusion"):
                r = _recommend_rows(args, Path(getattr(args, s)), ceiling, s)
            elif s == "synthetic":
                r = scenario_synthetic(args, ceiling)
            elif s == "explain":
                r = scenario_explain(args)
            elif s == "before":
                if ceiling is None:
                    from textrec.results import published_result

                    old = published_result("load_ceiling.json")
                    ceiling = old["models"]["constant body"]["throughput_rps"] if old else None
                r = scenario_before(args, ceiling)
            elif s == "writes":
                r = scenario_writes(args)
            else:
                r = scenario_hostile(args)
        except Exception as e:  # one broken scenario must not cost the others' (exclusive) machine time
            import traceback

            traceback.print_exc()
            print(f"load: scenario {s} failed: {e}", file=sys.stderr, flush=True)
            continue
        r.update(benchmark="load", scenario=s, name=FILES[s], ceiling_rps=ceiling, seconds_per_row=args.seconds,
                 scenario_seconds=round(time.perf_counter() - t0, 1),
                 server="textrec serve: one uvicorn worker (uvloop, httptools), 1 torch thread; client: wrk -t1, "
                        "same machine, loopback")
        r["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        results[FILES[s]] = r
        writer.write_json(f"load_{FILES[s]}.json", r)
        for row, m in r["models"].items():
            if "latency_ms" in m:
                lat = m["latency_ms"]
                print(f"  {row}: {m['throughput_rps']} req/s, p50 {lat['p50']} p95 {lat['p95']} p99 {lat['p99']} ms, "
                      f"errors {m['errors']}", file=sys.stderr, flush=True)
    # rows of scenarios not run now come from the published results (the summary covers them all)
    from textrec.results import published_result

    for key in FILES.values():
        if key not in results:
            old = published_result(f"load_{key}.json")
            if old is not None and old.get("benchmark") == "load" and "scenario" in old:
                results[key] = old
    summary = _summary(results, args, started)
    writer.write_json(SUMMARY_FILE, summary)
    writer.finish()
    doc = args.update_docs or ("docs/serving.md" if args.publish else None)
    if doc and update_docs(Path(doc), summary):
        print(f"updated the generated block of {doc}", file=sys.stderr)
    return 0
