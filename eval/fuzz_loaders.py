"""Fuzz every data loader with mutated copies of valid files and count how each one ends.

For each loader (see ``tests/fuzz_targets.py``) and each of ``--n`` seeded mutations, the
mutated files are loaded with ``on_error="raise"`` and with ``on_error="skip"``; the outcome is
one of:

* ``data_error``: a clean ``DataError`` (what bad input should give);
* ``accepted``: loaded (fine for most mutations: a flipped byte in a review text is still text);
* ``accepted_implausible``: loaded although the mutation put an implausible value (negative or
  overflowing rating, year-9999 timestamp, control characters or a JSON list as an id...)
  into a field the loader must validate: a silent wrong answer;
* ``other``: any other exception (the type is counted too);
* ``hang``: the load ran past ``--timeout`` seconds.

Usage::

    python eval/fuzz_loaders.py --n 2000 --out eval/results/fuzz_loaders_after.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout, not another install

from fuzz_targets import mutate, targets  # noqa: E402

from textrec.data import DataError  # noqa: E402


class Hang(Exception):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise Hang()


def classify(target, folder: Path, on_error: str, timeout: int) -> tuple[str, str]:
    """Load once; returns (outcome, exception type or '')."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        target.load(folder, on_error)
        return "accepted", ""
    except Hang:
        return "hang", "Hang"
    except DataError:
        return "data_error", ""
    except Exception as exc:  # noqa: BLE001 - counting exactly these is the point
        return "other", type(exc).__name__
    finally:
        signal.alarm(0)


def run(n: int, seed: int, timeout: int, only: list[str] | None) -> dict:
    logging.getLogger("textrec.data").setLevel(logging.CRITICAL)
    out: dict[str, dict] = {}
    for target in targets():
        if only and target.name not in only:
            continue
        counts = {"raise": Counter(), "skip": Counter()}
        other_types = {"raise": Counter(), "skip": Counter()}
        examples: dict[str, list[str]] = {"accepted_implausible": [], "other": [], "hang": []}
        rng = random.Random(f"{seed}-{target.name}")
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(n):
                m = mutate(target, rng)
                folder = target.write(Path(tmp) / f"m{k}", m.files)
                for mode in ("raise", "skip"):
                    outcome, etype = classify(target, folder, mode, timeout)
                    if outcome == "accepted" and m.must_reject and mode == "raise":
                        outcome = "accepted_implausible"
                    counts[mode][outcome] += 1
                    if etype:
                        other_types[mode][etype] += 1
                    if outcome in examples and len(examples[outcome]) < 8:
                        examples[outcome].append(f"[{mode}] {m.what[:120]}" + (f" -> {etype}" if etype else ""))
                for p in folder.iterdir():
                    p.unlink()
                folder.rmdir()
        out[target.name] = {
            "n": n, "seconds": round(time.time() - t0, 1),
            "raise": dict(counts["raise"]), "skip": dict(counts["skip"]),
            "other_types": {k: dict(v) for k, v in other_types.items()}, "examples": examples,
        }
        r = counts["raise"]
        print(f"{target.name:16s} raise: data_error {r['data_error']:5d}  accepted {r['accepted']:5d}  "
              f"implausible {r['accepted_implausible']:4d}  other {r['other']:4d}  hang {r['hang']:3d} | "
              f"skip other {counts['skip']['other']:4d} hang {counts['skip']['hang']:3d} "
              f"({time.time() - t0:.0f}s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="mutations per loader")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=int, default=10, help="seconds before a load counts as a hang")
    p.add_argument("--only", nargs="*", help="loader names to run (default: all)")
    p.add_argument("--out", type=Path, help="write the counts as JSON here")
    args = p.parse_args(argv)
    if args.n < 1 or args.timeout < 1:
        p.error("--n and --timeout must be positive")
    result = run(args.n, args.seed, args.timeout, args.only)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    doc = {"benchmark": "fuzz_loaders", "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
           "git_commit": commit,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
           "python": platform.python_version(), "loaders": result}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.only and args.out.exists():  # a partial rerun updates those loaders in the file
            old = json.loads(args.out.read_text())
            old["loaders"].update(result)
            old.setdefault("reruns", []).append({k: doc[k] for k in ("command", "git_commit", "date")})
            doc = old
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
