"""Load benchmark of ``textrec serve`` on loopback: concurrent clients, latency percentiles, memory.

    python eval/load_bench.py --artifact textrec-demo/ml-100k-sasrec --name ml-100k_sasrec
    python eval/load_bench.py --synthetic 100000 --name synthetic_100k
    python eval/load_bench.py --artifact DIR --explainer EXPLAINER_DIR --endpoint explain --clients 4

The server runs as its own process (``textrec serve``, one uvicorn worker, 1 torch thread); the
clients are asyncio tasks in this process, each sending its next request when the last one is
answered (closed loop), for at most ``--requests`` requests or ``--seconds`` seconds. Requests
are drawn with a fixed seed: known users (``user``) when the artifact has users, else ad-hoc
histories of ``--history`` random items. ``--synthetic N`` builds a TextKNN artifact over N
random unit vectors, which the server ranks through its FAISS index (exact up to 200,000 items,
IVF above). Reported: p50/p95/p99 latency, throughput, errors (any non-2xx answer or transport
failure), the server's resident memory after warm-up and at the end, the machine's load average
(the cores may be shared), and the targets. Writes ``eval/results/load_<name>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS_MS = {"recommend": 50.0, "recommend_faiss": 100.0}


def synthetic_artifact(n_items: int, folder: Path, dim: int = 384, seed: int = 0) -> Path:
    """A TextKNN artifact over ``n_items`` random unit vectors (ids ``s0``.., titles ``item n``)."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _requests(folder: Path, endpoint: str, n: int, history: int, k: int, seed: int,
              explain_pairs: list[tuple[str, str]] | None) -> list[dict]:
    from textrec.catalog import Catalog, UserTable

    rng = random.Random(seed)
    if endpoint == "explain":
        return [{"user": u, "item": i, "model": "bench"} for u, i in (rng.choice(explain_pairs) for _ in range(n))]
    users = UserTable.load(folder)
    if users is not None and len(users):
        return [{"user": rng.choice(users.ids), "k": k, "model": "bench"} for _ in range(n)]
    ids = Catalog.load(folder).ids
    return [{"history": rng.sample(ids, history), "k": k, "model": "bench"} for _ in range(n)]


def _explain_pairs(explainer: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """(user, item) pairs from the explainer's held-out reviews."""
    from textrec.explain.pipeline import Explainer

    data = Explainer.load(explainer, progress=False).data
    rng = random.Random(seed)
    test = data.split.test.tolist() if hasattr(data.split.test, "tolist") else list(data.split.test)
    rows = rng.sample(test, min(n, len(test)))
    r = data.reviews
    return [(str(data.user_ids[r["user"].iat[i]]), str(data.item_ids[r["item"].iat[i]])) for i in rows]


async def _drive(url: str, endpoint: str, bodies: list[dict], clients: int, seconds: float) -> dict:
    import httpx

    queue = list(reversed(bodies))
    lat: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while queue and time.perf_counter() < deadline:
            body = queue.pop()
            t0 = time.perf_counter()
            try:
                r = await client.post(f"/{endpoint}", json=body)
                ok = r.status_code < 300
                why = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                ok, why = False, type(e).__name__
            if ok:
                lat.append((time.perf_counter() - t0) * 1000)
            else:
                errors[why] = errors.get(why, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    a = np.array(lat) if lat else np.zeros(1)
    return {"requests_ok": len(lat), "errors": sum(errors.values()), "error_kinds": errors,
            "wall_seconds": round(wall, 2), "throughput_rps": round(len(lat) / wall, 1),
            "latency_ms": {"p50": round(float(np.percentile(a, 50)), 2), "p95": round(float(np.percentile(a, 95)), 2),
                           "p99": round(float(np.percentile(a, 99)), 2), "max": round(float(a.max()), 2),
                           "mean": round(float(a.mean()), 2)}}


def _rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--artifact", type=Path, help="a saved recommender folder")
    src.add_argument("--synthetic", type=int, metavar="N", help="serve N random item vectors (TextKNN + FAISS)")
    ap.add_argument("--explainer", type=Path, help="explainer folder (for --endpoint explain)")
    ap.add_argument("--endpoint", default="recommend", choices=["recommend", "explain"])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000, help="at most this many measured requests")
    ap.add_argument("--warmup", type=int, default=50, help="requests before measuring (not counted)")
    ap.add_argument("--seconds", type=float, default=120, help="stop measuring after this long")
    ap.add_argument("--history", type=int, default=20, help="ad-hoc history length (artifacts without users)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", required=True, help="result name: eval/results/load_<name>.json")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "eval" / "results")
    args = ap.parse_args(argv)
    for flag in ("clients", "requests", "history", "k"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be >= 1")
    if args.endpoint == "explain" and args.explainer is None:
        ap.error("--endpoint explain needs --explainer")

    tmp = None
    if args.synthetic:
        tmp = tempfile.TemporaryDirectory(prefix="textrec-load-")
        t0 = time.perf_counter()
        folder = synthetic_artifact(args.synthetic, Path(tmp.name) / "synthetic")
        print(f"built a {args.synthetic}-item synthetic artifact in {time.perf_counter() - t0:.1f}s", flush=True)
    else:
        folder = args.artifact
    pairs = _explain_pairs(args.explainer, 200, args.seed) if args.endpoint == "explain" else None
    bodies = _requests(folder, args.endpoint, args.warmup + args.requests, args.history, args.k, args.seed, pairs)

    port = _free_port()
    cmd = [sys.executable, "-m", "textrec.cli", "serve", f"bench={folder}", "--port", str(port), "--threads", "1"]
    if args.explainer:
        cmd += ["--explainer", f"bench={args.explainer}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t_start = time.perf_counter()
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        import httpx

        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {server.stderr.read()[-2000:]}")
            try:
                health = httpx.get(url + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        startup = time.perf_counter() - t_start
        asyncio.run(_drive(url, args.endpoint, bodies[:args.warmup], args.clients, args.seconds))
        rss_before = _rss_mb(server.pid)
        load_before = os.getloadavg()
        res = asyncio.run(_drive(url, args.endpoint, bodies[args.warmup:], args.clients, args.seconds))
        rss_after = _rss_mb(server.pid)
        load_after = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        if tmp is not None:
            tmp.cleanup()
    model = health["models"][0]
    faiss = model["ranking"] != "full"
    target = TARGETS_MS["recommend_faiss" if faiss else "recommend"] if args.endpoint == "recommend" else None
    from textrec.results import git_commit, machine

    result = {
        "benchmark": "load", "name": args.name, "endpoint": f"/{args.endpoint}",
        "artifact": str(args.artifact) if args.artifact else f"synthetic TextKNN, {args.synthetic} random 384-d vectors",
        "model_type": model["model_type"], "n_items": model["n_items"], "ranking": model["ranking"],
        "request": (f"known users, k={args.k}" if bodies and "user" in bodies[0] and args.endpoint == "recommend"
                    else f"ad-hoc histories of {args.history} items, k={args.k}" if args.endpoint == "recommend"
                    else "(user, item) pairs from held-out reviews"),
        "clients": args.clients, "requests_cap": args.requests, "seconds_cap": args.seconds, "warmup": args.warmup,
        **res, "server_startup_seconds": round(startup, 1),
        "server_rss_mb": {"after_warmup": rss_before, "end": rss_after, "growth": round(rss_after - rss_before, 1)},
        "target_p95_ms": target,
        "meets_target": (res["errors"] == 0 and (target is None or res["latency_ms"]["p95"] < target)),
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "note": "server and clients on one machine over loopback; server: one uvicorn worker, 1 torch thread, "
                "requests served in parallel by its thread pool. The machine's cores were shared with other "
                "jobs during this run when the load average exceeds the core count.",
        "command": "python eval/load_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": date.today().isoformat(), "git_commit": git_commit(), "machine": machine(), "seed": args.seed,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"load_{args.name}.json"
    from textrec.io import write_json

    write_json(out, result)
    lat = res["latency_ms"]
    print(f"{args.name}: {res['requests_ok']} ok, {res['errors']} errors, {res['throughput_rps']} req/s, "
          f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms; server RSS {rss_before} -> {rss_after} MB; "
          f"load avg {load_before[0]:.1f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
