"""``textrec serve DIR [DIR ...]``: the HTTP API and the page over saved artifacts."""

from __future__ import annotations

import argparse
import os
import re
import sys

from textrec.options import positive_float, positive_int

TOKEN_ENV = "TEXTREC_SERVE_TOKEN"
#: Host headers accepted by default when the server binds a loopback address (DNS rebinding guard)
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


def _split_name(spec: str) -> tuple[str | None, str]:
    """``name=folder`` or ``folder`` (the name is then the folder's name)."""
    name, eq, folder = spec.partition("=")
    if eq and _NAME.match(name):
        return name, folder
    return None, spec


def _attachments(specs: list[str] | None, names: list[str], what: str) -> dict[str, str]:
    """``[NAME=]DIR`` options -> {artifact name: folder}; a bare DIR goes to the first artifact."""
    out: dict[str, str] = {}
    for spec in specs or []:
        name, folder = _split_name(spec)
        name = name or names[0]
        if name not in names:
            raise ValueError(f"--{what} {spec}: no served artifact named '{name}' (served: {names})")
        out[name] = folder
    return out


def load_artifacts(specs: list[str], explainers: list[str] | None = None, query_writers: list[str] | None = None,
                   data_root: str | None = None, query_llm: bool = False) -> list:
    """Open every artifact folder given on the command line, with the engines attached to each."""
    from pathlib import Path

    from textrec.serve.backends import ServedArtifact

    named = []
    for spec in specs:
        name, folder = _split_name(spec)
        name = name or Path(folder).resolve().name
        if not _NAME.match(name):
            raise ValueError(f"artifact name '{name}' must match {_NAME.pattern}; pass NAME=FOLDER")
        named.append((name, folder))
    names = [n for n, _ in named]
    exp = _attachments(explainers, names, "explainer")
    qw = _attachments(query_writers, names, "query-writer")
    out = []
    for name, folder in named:
        print(f"textrec serve: loading {folder} as '{name}'", file=sys.stderr)
        out.append(ServedArtifact.load(folder, name=name, explainer=exp.get(name), query_writer=qw.get(name),
                                       data_root=data_root, query_llm=query_llm))
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the artifacts and run uvicorn until interrupted."""
    import torch
    import uvicorn

    from textrec.serve.app import create_app
    from textrec.serve.guard import GuardSettings

    torch.set_num_threads(args.threads)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    artifacts = load_artifacts(args.artifacts, args.explainer, args.query_writer, data_root=args.data_root,
                               query_llm=args.query_llm)
    hosts = args.allowed_host or (LOOPBACK_HOSTS if args.host in ("127.0.0.1", "localhost", "::1") else None)
    guard = GuardSettings(max_body_bytes=args.max_body, allowed_hosts=hosts, rate=args.rate_limit,
                          burst=args.rate_burst)
    app = create_app(artifacts, token=token, guard=guard, cache=not args.no_cache, batching=not args.no_batching)
    for a in artifacts:
        caps = ", ".join(k for k, v in a.capabilities.items() if v)
        print(f"textrec serve: '{a.name}' ({a.model_type}, {len(a.catalog)} items): {caps}", file=sys.stderr)
    if token is None:
        print(f"textrec serve: no token given (--token or {TOKEN_ENV}): POST /items is disabled",
              file=sys.stderr)
    print(f"textrec serve: page http://{args.host}:{args.port}/  API docs http://{args.host}:{args.port}/docs",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
                server_header=False)
    return 0


def _port(text: str) -> int:
    v = int(text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {v}")
    return v


def _threads(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"threads must be >= 1, got {v}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``textrec serve`` to the top-level parser."""
    p = sub.add_parser("serve", help="HTTP API + web page over saved models (recommend, add items, explain, query)",
                       description=__doc__)
    p.add_argument("artifacts", nargs="+", metavar="DIR",
                   help="saved model folder(s), optionally NAME=DIR; the first is the default")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument("--token", default=None,
                   help=f"token that POST /items requires (default ${TOKEN_ENV}; none = adding items disabled)")
    p.add_argument("--threads", type=_threads, default=1,
                   help="torch threads per request (default 1: requests run in parallel instead)")
    p.add_argument("--explainer", action="append", metavar="[NAME=]DIR",
                   help="a saved explainer (ERRA) for artifact NAME (default: the first); repeatable")
    p.add_argument("--query-writer", action="append", metavar="[NAME=]DIR",
                   help="a saved Rec-R1 query writer for artifact NAME (default: the first); repeatable")
    p.add_argument("--query-llm", action="store_true",
                   help="write queries with the untrained SmolLM2 policy when an artifact has no trained "
                        "writer (default: Rec-R1's raw-history query)")
    p.add_argument("--data-root", help="folder holding the shared datasets (for explainers)")
    p.add_argument("--max-body", type=positive_int, default=1_000_000, metavar="BYTES",
                   help="largest request body accepted; larger ones get 413 before they are read (default 1 MB)")
    p.add_argument("--allowed-host", action="append", metavar="HOST",
                   help="Host header to accept (repeatable; '*.example.org' and '*' work); default: "
                        "localhost names when bound to a loopback address, else any")
    p.add_argument("--rate-limit", type=positive_float, default=None, metavar="PER_SECOND",
                   help="requests per second per client address (default: no limit); over it: 429")
    p.add_argument("--rate-burst", type=positive_int, default=20, help="requests a client may send at once (default 20)")
    p.add_argument("--no-cache", action="store_true",
                   help="compute every answer (no precomputed top lists, no response cache): to measure the cache")
    p.add_argument("--no-batching", action="store_true",
                   help="compute each request on its own in the thread pool: to measure batching")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)
