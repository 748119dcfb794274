"""The one result writer of every benchmark: run metadata, JSON, Markdown tables, where files go.

A benchmark writes into a new run folder ``runs/<bench>-<timestamp>/`` by default. The committed
``eval/results/`` is written only when asked (``--publish``, or ``--out eval/results``): files
are written to a temporary folder beside it and moved into place one by one (``os.replace``)
when the run ends, so a crashed or interrupted run leaves the committed results untouched and its
partial files in the temporary folder, whose path it prints.

``textrec results`` regenerates ``eval/README.md`` (and the pages beside it) from the result
files, and ``textrec report`` draws the HTML report: both come from the one renderer,
``textrec.report``. A result of record is a JSON file at the top of ``eval/results/``; its parts
(per seed, per indexing), tries and logs go in the folder of the same name (``part_dir``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from textrec.io import atomic_write_text, write_json

#: the committed results folder, relative to the repository root
PUBLISHED = Path("eval") / "results"
RUNS = Path("runs")
REPO_ROOT = Path(__file__).resolve().parent.parent

#: the argv of the ``textrec`` command being run (set by ``textrec.cli.main``; recorded as ``command``)
CURRENT_ARGV: list[str] | None = None


def git_commit() -> str:
    """The current commit of the source checkout (``unknown`` outside git), with a dirty flag."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def thread_counts() -> dict[str, int]:
    """The thread pools in use now: torch intra-op and inter-op, FAISS OpenMP."""
    out: dict[str, int] = {}
    try:
        import torch

        out["torch"] = int(torch.get_num_threads())
        out["torch_interop"] = int(torch.get_num_interop_threads())
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if "faiss" in sys.modules:  # never import FAISS just to ask
        out["faiss"] = int(sys.modules["faiss"].omp_get_max_threads())
    return out


def machine() -> str:
    """A one-line description of where a benchmark ran (hardware and versions, no opinions)."""
    import torch

    return (f"{platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
            f"{platform.system()} {platform.release()}, python {platform.python_version()}, torch {torch.__version__}")


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used so far, all its threads together."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as a user would retype it (``textrec ...`` when run through the CLI)."""
    if argv is None and CURRENT_ARGV is None:
        return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    return shlex.join(["textrec", *(CURRENT_ARGV if argv is None else argv)])


def run_metadata(seed: int | None = None, started: float | None = None, command: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    """Metadata every result carries: commit, date, machine, threads, command, seed, wall and CPU time, memory."""
    meta: dict[str, Any] = {
        "git_commit": git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "threads": thread_counts(),
        "command": command or command_line(),
    }
    if seed is not None:
        meta["seed"] = seed
    if started is not None:
        meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    meta["cpu_seconds"] = round(cpu_seconds(), 1)
    meta["peak_rss_mb"] = round(peak_rss_mb(), 1)
    meta.update(extra)
    return meta


def metadata_line(result: Mapping[str, Any]) -> str:
    """One Markdown line saying how, when and where a result was made."""
    threads = result.get("threads")
    t = ""
    if "thread" in str(result.get("machine", "")):
        pass  # the machine line already says it
    elif isinstance(threads, Mapping) and threads:
        t = f", {threads.get('torch', '?')} torch thread(s)"
    elif threads:
        t = f", {threads} thread(s)"
    parts = [f"Run {result.get('date', '?')} at commit `{str(result.get('git_commit', '?'))[:12]}`"
             f" on {result.get('machine', '?')}{t}."]
    if result.get("command"):
        parts.append(f"Command: `{result['command']}`.")
    return " ".join(parts)


Column = tuple[str, Callable[[Mapping[str, Any]], Any], str]


def markdown_table(rows: Iterable[tuple[str, Mapping[str, Any]]], columns: Sequence[Column],
                   first: str = "model") -> str:
    """A Markdown table: one row per ``(name, record)``, columns ``(header, getter, format)``.

    A getter that raises ``KeyError``/``TypeError`` or returns ``None`` gives an empty cell, so a
    row lacking a metric (a refit row without valid numbers) still renders.
    """
    lines = [f"| {first} | " + " | ".join(h for h, _, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, rec in rows:
        cells = []
        for _, get, fmt in columns:
            try:
                v = get(rec)
            except (KeyError, TypeError, IndexError):
                v = None
            cells.append("" if v is None else format(v, fmt) if fmt else str(v))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def default_run_dir(bench: str, root: str | Path = RUNS) -> Path:
    """``runs/<bench>-<UTC timestamp>`` (a fresh name: a numeric suffix is added if taken)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{bench}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{bench}-{stamp}-{n}"
    return path


class ResultWriter:
    """Where a benchmark's files go, and the metadata stamped on its JSON.

    ``out=None`` and ``publish=False``: a new run folder (files written directly, so a long
    run's partial results are visible there). ``publish=True`` means ``eval/results``. Any other
    existing folder given as ``out`` is written through a temporary folder and swapped in by
    ``finish()`` (also called when used as a context manager that exits without an error).
    """

    def __init__(self, bench: str, out: str | Path | None = None, publish: bool = False,
                 seed: int | None = None, started: float | None = None):
        if publish and out is not None and Path(out).resolve() != (Path.cwd() / PUBLISHED).resolve():
            raise ValueError(f"--publish writes to {PUBLISHED}; do not also give --out {out}")
        self.bench = bench
        self.seed = seed
        self.started = started if started is not None else time.perf_counter()
        self.out = Path(out) if out is not None else PUBLISHED if publish else default_run_dir(bench)
        self.staged = self.out.exists() and any(self.out.iterdir())
        if self.staged:
            self.dir = Path(tempfile.mkdtemp(prefix=f".{bench}-", dir=self.out.parent))
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            self.dir = self.out
        self.written: list[str] = []

    def path(self, name: str) -> Path:
        """Where ``name`` is written during the run."""
        return self.dir / name

    def final_path(self, name: str) -> Path:
        """Where ``name`` ends up after ``finish()``."""
        return self.out / name

    def existing(self, name: str) -> Path | None:
        """The file ``name`` as written so far by this run, else as already in the output folder."""
        for p in (self.path(name), self.final_path(name)):
            if p.is_file():
                return p
        return None

    def metadata(self, **extra: Any) -> dict[str, Any]:
        """This run's metadata now (wall time and memory so far)."""
        return run_metadata(seed=self.seed, started=self.started, **extra)

    def record(self, name: str) -> None:
        """Count a file written directly at ``path(name)`` (a log) as one of this run's results."""
        if name not in self.written:
            self.written.append(name)

    def write_json(self, name: str, data: Mapping[str, Any], metadata: bool = True) -> Path:
        """Write ``data`` (+ the run metadata, unless the record already carries it) as JSON."""
        record = dict(data)
        if metadata:  # the run's metadata wins, except a seed or CPU time the record states itself
            meta = self.metadata()
            for key in ("seed", "cpu_seconds"):
                if key in record:
                    meta.pop(key, None)
            record.update(meta)
        path = self.path(name)
        write_json(path, record)
        self.record(name)
        return path

    def write_text(self, name: str, text: str) -> Path:
        """Write a text file (a Markdown table, a JSONL of predictions)."""
        path = self.path(name)
        atomic_write_text(path, text)
        self.record(name)
        return path

    def copy_file(self, src: str | Path, name: str) -> Path:
        """Copy a file produced elsewhere (a plot) into the results."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)
        self.record(name)
        return path

    def finish(self) -> Path:
        """Move staged files into the output folder (one ``os.replace`` each); returns the folder."""
        if self.staged:
            self.out.mkdir(parents=True, exist_ok=True)
            for name in self.written:
                dst = self.out / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.dir / name, dst)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.staged = False
            self.dir = self.out
        if self.written:
            print(f"results written to {self.out}/: {', '.join(self.written)}", file=sys.stderr)
        return self.out

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        elif self.staged and self.written:
            print(f"run failed: {self.out} left untouched; partial results in {self.dir}", file=sys.stderr)


def add_output_options(p, bench: str) -> None:
    """``--out DIR`` and ``--publish`` for a benchmark parser."""
    p.add_argument("--out", "--out-dir", dest="out", default=None,
                   help=f"results folder (default: a new runs/{bench}-<timestamp>/)")
    p.add_argument("--publish", action="store_true",
                   help=f"write to the committed {PUBLISHED}/ (files swapped in when the run ends)")


def writer_from_args(args, bench: str) -> ResultWriter:
    """The ``ResultWriter`` for a benchmark's parsed ``--out`` / ``--publish`` / ``--seed``."""
    return ResultWriter(bench, out=getattr(args, "out", None), publish=getattr(args, "publish", False),
                        seed=getattr(args, "seed", None))


def published_result(name: str) -> dict[str, Any] | None:
    """A committed result (``eval/results/<name>``) for comparison rows, or ``None`` if absent."""
    for root in (Path.cwd(), REPO_ROOT):
        path = root / PUBLISHED / name
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    return None


def part_dir(record: str) -> Path:
    """Folder of the parts, tries and logs behind a result of record (``<results>/<record stem>/``)."""
    return Path(record).with_suffix("") if record.endswith(".json") else Path(record)


def published_part(record: str, name: str) -> tuple[dict[str, Any] | None, Path | None]:
    """A committed part file (``eval/results/<record>/<name>``) and its path from the checkout root,
    or ``(None, None)``."""
    rel = PUBLISHED / part_dir(record) / name
    for root in (Path.cwd(), REPO_ROOT):
        if (root / rel).is_file():
            return json.loads((root / rel).read_text(encoding="utf-8")), rel
    return None, None
