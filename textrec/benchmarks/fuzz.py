"""``textrec bench fuzz``: fuzz every data loader with mutated copies of valid files and count how
each one ends.

For each loader (see ``tests/fuzz_targets.py``: the loaders, their valid files and the
mutators, shared with ``tests/test_fuzz_loaders.py``; so this benchmark runs from a source
checkout) and each of ``--n`` seeded mutations, the mutated files are loaded with
``on_error="raise"`` and with ``on_error="skip"``; the outcome is one of:

* ``data_error``: a clean ``DataError`` (what bad input should give);
* ``accepted``: loaded (fine for most mutations: a flipped byte in a review text is still text);
* ``accepted_implausible``: loaded although the mutation put an implausible value (negative or
  overflowing rating, year-9999 timestamp, control characters or a JSON list as an id...)
  into a field the loader must validate: a silent wrong answer;
* ``other``: any other exception (the type is counted too);
* ``hang``: the load ran past ``--timeout`` seconds.

    textrec bench fuzz --n 2000 --name fuzz_loaders_after --publish
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from textrec.options import add_seed_option, add_threads_option, positive_int, progress_log
from textrec.results import REPO_ROOT, add_output_options, writer_from_args

TESTS = REPO_ROOT / "tests"


class Hang(Exception):
    """A load that ran past its time limit."""


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise Hang()


def fuzz_targets():
    """The ``tests/fuzz_targets`` module of this source checkout."""
    if not (TESTS / "fuzz_targets.py").is_file():
        raise FileNotFoundError(f"{TESTS / 'fuzz_targets.py'}: the fuzz targets live in the tests of a source "
                                "checkout; run this benchmark from one")
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import fuzz_targets

    return fuzz_targets


def classify(target, folder: Path, on_error: str, timeout: int) -> tuple[str, str]:
    """Load once; returns (outcome, exception type or '')."""
    from textrec.data import DataError

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


def fuzz_loaders(n: int, seed: int, timeout: int, only: list[str] | None) -> dict:
    """Per loader: outcome counts under ``raise`` and ``skip``, other exception types, examples."""
    ft = fuzz_targets()
    logging.getLogger("textrec.data").setLevel(logging.CRITICAL)
    out: dict[str, dict] = {}
    for target in ft.targets():
        if only and target.name not in only:
            continue
        counts = {"raise": Counter(), "skip": Counter()}
        other_types = {"raise": Counter(), "skip": Counter()}
        examples: dict[str, list[str]] = {"accepted_implausible": [], "other": [], "hang": []}
        rng = random.Random(f"{seed}-{target.name}")
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(n):
                m = ft.mutate(target, rng)
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
        progress_log(f"{target.name:16s} raise: data_error {r['data_error']:5d}  accepted {r['accepted']:5d}  "
                     f"implausible {r['accepted_implausible']:4d}  other {r['other']:4d}  hang {r['hang']:3d} | "
                     f"skip other {counts['skip']['other']:4d} hang {counts['skip']['hang']:3d} "
                     f"({time.time() - t0:.0f}s)")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``textrec bench fuzz``."""
    p.add_argument("--n", type=positive_int, default=2000, help="mutations per loader")
    p.add_argument("--timeout", type=positive_int, default=10, help="seconds before a load counts as a hang")
    p.add_argument("--only", nargs="*", help="loader names to run (default: all)")
    p.add_argument("--name", default="fuzz_loaders", help="result file stem (default fuzz_loaders)")
    add_seed_option(p)
    add_threads_option(p)
    add_output_options(p, "fuzz")


def run(args: argparse.Namespace) -> int:
    """Write ``<name>.json``; with ``--only``, the loaders rerun replace theirs in an existing file."""
    import json

    with writer_from_args(args, "fuzz") as writer:
        result = fuzz_loaders(args.n, args.seed, args.timeout, args.only)
        name = f"{args.name}.json"
        doc = {"benchmark": "fuzz_loaders", "loaders": result}
        old = writer.existing(name)
        if args.only and old is not None:  # a partial rerun updates those loaders in the file
            prev = json.loads(old.read_text(encoding="utf-8"))
            prev["loaders"].update(result)
            meta = writer.metadata()
            prev.setdefault("reruns", []).append({k: meta[k] for k in ("command", "git_commit", "date")})
            writer.write_json(name, prev, metadata=False)
        else:
            writer.write_json(name, doc)
    return 0
