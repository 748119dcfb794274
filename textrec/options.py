"""Run options shared by every command: dataset, data root, seed, threads, output, progress, recipe.

Each command adds the groups it needs (``add_dataset_options``, ``add_run_options``,
``add_recipe_options``) and calls ``setup_run(args)`` first; ``add_shared_options`` then gives
every command the shared options it still lacks (``--threads``, ``--quiet``), so no command
refuses them. ``--seed`` is defined here only (``add_seed_option``). Numbers are checked by the argparse
type functions below, so ``--epochs -1`` fails at parse time with a message naming the option.

Threads. One number sets torch's intra-op pool and FAISS's OpenMP pool; torch's inter-op pool
is one thread. textrec never runs a torch op and a FAISS call at the same time, so the process
keeps at most ``--threads`` busy threads. Left alone, the two libraries would each size their
own pool (torch: physical cores, FAISS: every logical core, spinning while idle) and fight for
the same cores. The default is ``$TEXTREC_THREADS`` if set, else the CPUs this process may run
on (its affinity mask, capped by a cgroup CPU quota), so a container limited to 2 CPUs on a
64-core host uses 2, not 64. Several runs sharing one machine should pass ``--threads``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

THREADS_ENV = "TEXTREC_THREADS"


# ---- argparse type functions -----------------------------------------------------------------
def _number(kind: Callable[[str], Any], text: str, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _number(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _number(int, text, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(float, text, "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(float, text, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value:g}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1 (a share of users or items)."""
    value = _number(float, text, "a number")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, got {value:g}")
    return value


# ---- threads ---------------------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def default_threads() -> int:
    """``$TEXTREC_THREADS`` if set (a positive integer), else ``available_cpus()``."""
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            return positive_int(env)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"{THREADS_ENV}={env!r}: {e}") from None
    return available_cpus()


def set_threads(n: int | None = None) -> int:
    """Give torch's intra-op pool and FAISS's OpenMP pool ``n`` threads (default ``default_threads()``)."""
    import torch

    n = n or default_threads()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        pass
    return n


# ---- datasets --------------------------------------------------------------------------------
#: short names accepted by ``--columns`` -> the table loader's keys
COLUMN_KEYS = {"user": "user_id", "user_id": "user_id", "item": "item_id", "item_id": "item_id",
               "time": "timestamp", "timestamp": "timestamp", "rating": "rating", "title": "title"}


def parse_columns(text: str) -> dict[str, str]:
    """argparse type: ``user=uid,item=iid,time=ts,rating=r[,title=name]`` -> the table loader's ``columns``
    (``title`` names the ``--items`` table's title column; :func:`dataset_kwargs` moves it there)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, eq, col = (s.strip() for s in part.partition("="))
        if not (eq and key and col):
            raise argparse.ArgumentTypeError(f"'{part}': expected NAME=COLUMN, e.g. user=uid,item=iid,time=ts")
        if key not in COLUMN_KEYS:
            raise argparse.ArgumentTypeError(f"'{key}' is not one of user, item, time, rating, title")
        if COLUMN_KEYS[key] in out:
            raise argparse.ArgumentTypeError(f"'{key}' is given twice")
        out[COLUMN_KEYS[key]] = col
    if not {"user_id", "item_id"} <= set(out):
        raise argparse.ArgumentTypeError("user= and item= are required, e.g. user=uid,item=iid")
    return out


def add_dataset_options(p: argparse.ArgumentParser, default: str | None = "ml-100k",
                        positional: bool = False) -> None:
    """``--dataset`` (or a positional), ``--data-root``, ``--columns``, ``--sep``, ``--on-error``."""
    names = "ml-100k | scientific | beauty | instruments | a folder or file (CSV/TSV/Parquet with --columns)"
    if positional:
        p.add_argument("dataset", help=names)
    else:
        p.add_argument("--dataset", default=default, required=default is None, help=names)
    p.add_argument("--data-root", help="folder holding the named datasets (default $TEXTREC_DATA, "
                                       "else ../shared/data)")
    p.add_argument("--columns", type=parse_columns, metavar="user=COL,item=COL[,time=COL,rating=COL,title=COL]",
                   help="column mapping of a CSV/TSV/Parquet dataset file; title= names the --items table's "
                        "title column")
    p.add_argument("--items", dest="item_table", metavar="FILE",
                   help="with --columns: an item table (same item id column; its other columns become item "
                        "text; the title column, title= in --columns or else one named 'title', the display "
                        "title)")
    p.add_argument("--sep", help="delimiter of a CSV/TSV dataset file (default: from the extension)")
    p.add_argument("--on-error", choices=["raise", "skip"], help="bad rows: raise (default) or count and skip")


def dataset_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The loader keywords of the dataset options (``--columns``, ``--items``, ``--sep``,
    ``--on-error``): every command that loads a dataset passes exactly these, so they all see
    the same catalog."""
    kw: dict[str, Any] = {}
    if getattr(args, "on_error", None):
        kw["on_error"] = args.on_error
    columns = dict(getattr(args, "columns", None) or {})
    title = columns.pop("title", None)
    if columns:
        kw["columns"] = columns
        if getattr(args, "sep", None):
            kw["sep"] = args.sep
        if getattr(args, "item_table", None):
            kw["item_path"] = args.item_table
            if title:
                kw["title_column"] = title
        elif title:
            raise ValueError(f"--columns title={title} names a column of the item table: give it with --items FILE")
    elif getattr(args, "sep", None) or getattr(args, "item_table", None):
        raise ValueError("--sep and --items apply to a CSV/TSV/Parquet dataset given with --columns")
    return kw


def load_dataset_from_args(args: argparse.Namespace, name: str | None = None):
    """Load ``args.dataset`` (or ``name``) with the dataset options of ``args``."""
    from textrec.data.registry import load_dataset

    kw = dataset_kwargs(args)
    columns = kw.get("columns")
    target = name if name is not None else args.dataset
    if columns and not Path(target).is_file():
        raise ValueError(f"--columns applies to a CSV/TSV/Parquet file; '{target}' is not a file")
    if not columns and Path(target).is_file():
        from textrec.data.registry import detect_format

        if detect_format(target) == "tabular":
            raise ValueError(f"{target} is a table: name its columns with --columns user=COL,item=COL"
                             f"[,time=COL,rating=COL] (its columns: {table_columns(target)})")
    return load_dataset(target, data_root=getattr(args, "data_root", None), **kw)


def table_columns(path: str | Path) -> str:
    """The header of a CSV/TSV/Parquet file, for error messages (``?`` if unreadable)."""
    path = Path(path)
    try:
        if path.name.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            return ", ".join(pq.read_schema(path).names)
        import csv
        import gzip

        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            head = fh.readline()
        delim = "\t" if ".tsv" in path.name.lower() or ".tab" in path.name.lower() else None
        row = next(csv.reader([head], delimiter=delim or (csv.Sniffer().sniff(head).delimiter if head else ",")))
        return ", ".join(c.strip() for c in row)
    except Exception:  # a best-effort hint only: the loader reports the real problem
        return "?"


# ---- run options -------------------------------------------------------------------------------
def add_seed_option(p: argparse.ArgumentParser, default: int | None = 0) -> None:
    """``--seed`` (an integer >= 0; ``None`` default = the recipe's)."""
    p.add_argument("--seed", type=non_negative_int, default=default,
                   help=f"random seed (default {default if default is not None else 'the recipe'})")


def add_seeds_option(p: argparse.ArgumentParser, default: tuple[int, ...] = (0,)) -> None:
    """``--seeds`` (one or more integers >= 0): repeat a benchmark condition once per seed."""
    p.add_argument("--seeds", type=non_negative_int, nargs="+", default=list(default),
                   help=f"random seeds, one run per seed (default {' '.join(map(str, default))})")


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads`` (one pool size for torch and FAISS; see the module docstring)."""
    p.add_argument("--threads", type=positive_int, default=None,
                   help=f"torch and FAISS threads (default ${THREADS_ENV}, else the CPUs this process may use)")


def add_progress_option(p: argparse.ArgumentParser) -> None:
    """``--quiet`` (alias ``--no-progress``): no progress bars or progress lines."""
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help=f"no progress (a terminal gets tqdm bars; a log one line per "
                        f"${PROGRESS_SECONDS_ENV} s, default {DEFAULT_PROGRESS_SECONDS:g})")


def add_run_options(p: argparse.ArgumentParser, seed: int | None = 0, progress: bool = True) -> None:
    """``--seed``, ``--threads`` and (with ``progress``) ``--quiet`` / ``--no-progress``."""
    add_seed_option(p, seed)
    add_threads_option(p)
    if progress:
        add_progress_option(p)


def setup_run(args: argparse.Namespace) -> None:
    """Apply the run options: thread pools, ``--quiet``, and ``args.threads`` set to the count used."""
    set_quiet(getattr(args, "quiet", False))
    args.threads = set_threads(getattr(args, "threads", None))


def progress(args: argparse.Namespace) -> bool:
    """Whether progress bars are wanted."""
    return not getattr(args, "quiet", False)


def _leaf_parsers(p: argparse.ArgumentParser):
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield p
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):  # aliases map to one parser
            yield from _leaf_parsers(child)


def add_shared_options(p: argparse.ArgumentParser) -> None:
    """Give every command of ``p`` the shared options it lacks: ``--threads`` and ``--quiet``.

    Commands add what they use themselves (with their own help); this pass only makes sure no
    command refuses a shared option, so one command line style works everywhere.
    """
    for leaf in _leaf_parsers(p):
        have = {o for a in leaf._actions for o in a.option_strings}
        if "--threads" not in have:
            add_threads_option(leaf)
        if not {"--quiet", "--no-progress"} & have:
            add_progress_option(leaf)


def apply_shared_options(args: argparse.Namespace) -> None:
    """Apply ``--quiet`` and ``--threads`` before a command runs.

    A given ``--threads`` sizes torch's and FAISS's pools at once (``set_threads``), so a command
    that never calls ``setup_run`` still keeps to it; commands that do call it size them again
    (with the default when ``--threads`` is absent).
    """
    set_quiet(getattr(args, "quiet", False))
    threads = getattr(args, "threads", None)
    if threads:
        set_threads(threads)


# ---- progress ------------------------------------------------------------------------------------
PROGRESS_SECONDS_ENV = "TEXTREC_PROGRESS_SECONDS"
#: off a terminal, a bar prints one line at most this often (seconds; ``$TEXTREC_PROGRESS_SECONDS``)
DEFAULT_PROGRESS_SECONDS = 30.0
_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every progress bar of this process, whatever each call site asks."""
    global _quiet
    _quiet = bool(quiet)


def progress_seconds() -> float:
    """Seconds between progress lines when output is not a terminal."""
    env = os.environ.get(PROGRESS_SECONDS_ENV)
    if env:
        try:
            return non_negative_float(env)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"{PROGRESS_SECONDS_ENV}={env!r}: {e}") from None
    return DEFAULT_PROGRESS_SECONDS


class _LineWriter:
    """A file for tqdm off a terminal: each in-place redraw (``\\r...``) becomes one whole line.

    tqdm redraws a bar by writing a carriage return and the new text (and moves between nested
    bars with newlines and cursor-up codes); in a log file that is one endless line. Here every
    non-empty redraw is written as a line of its own, and blank redraws (a bar clearing itself)
    are dropped.
    """

    _ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, fp):
        self.fp = fp
        self.last = ""

    def write(self, text: str) -> int:
        for piece in re.split(r"[\r\n]", self._ESCAPES.sub("", str(text))):
            piece = piece.strip()
            if piece and piece != self.last:
                self.fp.write(piece + "\n")
                self.last = piece
        return len(text)

    def flush(self) -> None:
        getattr(self.fp, "flush", lambda: None)()

    def isatty(self) -> bool:
        return False


def _is_terminal(fp) -> bool:
    try:
        return bool(fp.isatty())
    except (AttributeError, ValueError):
        return False


def _tqdm_class():
    from tqdm.auto import tqdm

    return tqdm


class _ProgressMeta(type):
    """Makes ``progress_bar`` a tqdm subclass built on first use (tqdm stays out of ``--help``)."""

    _cls = None

    def _real(cls):
        if cls._cls is None:
            base = _tqdm_class()

            class ProgressBar(base):  # type: ignore[misc, valid-type]
                """tqdm on a terminal; one line per ``progress_seconds()`` elsewhere; nothing when quiet."""

                def __init__(self, *args, **kw):
                    if _quiet:
                        kw["disable"] = True
                    fp = kw.get("file") or sys.stderr
                    # disable=None is tqdm's "terminal only": such a bar stays silent in logs
                    if kw.get("disable") is False or ("disable" not in kw and not _quiet):
                        if not _is_terminal(fp):
                            kw["file"] = _LineWriter(fp)
                            kw["mininterval"] = max(float(kw.get("mininterval") or 0), progress_seconds())
                            kw["ascii"] = True
                            kw.setdefault("ncols", 100)
                    super().__init__(*args, **kw)

            cls._cls = ProgressBar
        return cls._cls

    def __call__(cls, *args, **kw):
        return cls._real()(*args, **kw)

    def __getattr__(cls, name):  # progress_bar.write(...), progress_bar.get_lock() ...
        return getattr(cls._real(), name)


class progress_bar(metaclass=_ProgressMeta):  # noqa: N801 - used exactly like ``tqdm``
    """Every progress bar of textrec: call it as ``tqdm`` (same arguments).

    On a terminal it is tqdm. When stderr is a file or a pipe (CI logs, ``nohup``) it prints one
    plain line at most every ``progress_seconds()`` seconds (and at the end), never carriage
    returns. ``--quiet`` (``set_quiet``) silences every bar.
    """


def progress_log(message: str) -> None:
    """One progress line (a stage starting or ending) on stderr, unless ``--quiet``."""
    if not _quiet:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_grids(specs: list[str] | None) -> dict[str, dict[str, list]]:
    """``["EASE.lam=100,250,500"]`` -> ``{"EASE": {"lam": [100.0, 250.0, 500.0]}}`` (ints stay ints)."""
    out: dict[str, dict[str, list]] = {}
    for spec in specs or []:
        key, eq, values = spec.partition("=")
        model, dot, param = key.partition(".")
        if not (eq and dot and model and param and values):
            raise ValueError(f"--grid '{spec}': expected MODEL.param=v1,v2,...")
        vals: list = []
        for v in values.split(","):
            try:
                vals.append(int(v) if v.strip().lstrip("-").isdigit() else float(v))
            except ValueError:
                raise ValueError(f"--grid '{spec}': '{v}' is not a number") from None
        out.setdefault(model, {})[param] = vals
    return out


# ---- recipes and --set ---------------------------------------------------------------------------
def add_recipe_options(p: argparse.ArgumentParser, default: str) -> None:
    """``--recipe NAME|PATH`` and repeatable ``--set key=value`` overrides."""
    p.add_argument("--recipe", default=default, help=f"training/<name>.yaml or a path (default {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set trainer.epochs=5 (repeatable; dotted keys)")


# Checked when overridden (matched on the last key part): counts, rates and budgets are never
# negative, and the ones below can't be zero either (zero epochs trains nothing).
_NON_NEGATIVE = re.compile(r"(^|_)(epochs?|steps|size|lr|learning_rate|patience|beams|layers|heads|hidden|"
                           r"d_model|d_ff|ff|len|iters|generations|minutes|dim|r|alpha|subvectors|"
                           r"centroids|every|weight|decay|words|tasks|history)$")
_POSITIVE = re.compile(r"^(epochs|max_steps|batch_size|lr|learning_rate|patience|beams|layers|num_layers|heads|"
                       r"num_heads|hidden|d_model|d_ff|ff|max_len|num_generations|vocab_size|n_subvectors|"
                       r"n_centroids|eval_every|sft_batch_size|sft_learning_rate|max_minutes|prompts_per_step)$")
_UNIT = re.compile(r"(^|_)dropout$")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _schema_keys(schema: Mapping[str, type] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Dotted keys -> default values, and -> type annotations, of the config dataclasses of a recipe."""
    defaults: dict[str, Any] = {}
    types: dict[str, str] = {}
    for section, cls in (schema or {}).items():
        prefix = f"{section}." if section else ""
        for f in dataclasses.fields(cls):
            defaults[prefix + f.name] = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            types[prefix + f.name] = str(f.type)
    return defaults, types


def _coerce(key: str, text: str, current: Any, annotation: str = "") -> Any:
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    bad = f"--set {key}={text}: expected {{}}"

    def number(kind):
        try:
            return kind(text.strip())
        except ValueError:
            return None

    kinds = set(re.findall(r"\w+", annotation))
    if "float" in kinds and isinstance(current, int) and not isinstance(current, bool):
        current = float(current)  # a recipe's "20" for a float field (minutes) is still a float field
    if "str" in kinds and not isinstance(value, (bool, int, float)):
        value = text  # a field that also takes a word (resume: true | "auto" | a path)
    elif isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(bad.format("true or false"))
    elif isinstance(current, int):
        value = number(int)
        if value is None:
            raise ValueError(bad.format("an integer"))
    elif isinstance(current, float):
        value = number(float)
        if value is None:
            raise ValueError(bad.format("a number"))
    elif isinstance(current, str):
        value = text
    elif isinstance(current, list):
        if not isinstance(value, list):
            value = [yaml.safe_load(v) for v in text.split(",")] if text else []
    elif isinstance(value, str) and number(float) is not None:  # YAML 1.1 reads "1e-3" as a string
        value = number(int) if number(int) is not None else number(float)
    last = key.rsplit(".", 1)[-1]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(bad.format("a finite number"))
        if _POSITIVE.search(last) and value <= 0:
            raise ValueError(bad.format("a number > 0"))
        if _NON_NEGATIVE.search(last) and value < 0:
            raise ValueError(bad.format("a number >= 0"))
        if _UNIT.search(last) and not 0 <= value < 1:
            raise ValueError(bad.format("a number in [0, 1)"))
    return value


def apply_overrides(recipe: Mapping[str, Any], overrides: list[str] | None,
                    schema: Mapping[str, type] | None = None) -> dict[str, Any]:
    """A copy of ``recipe`` with ``["trainer.epochs=5", ...]`` applied, each value typed and checked.

    A key must exist in the recipe or in ``schema`` (section name -> config dataclass, ``""`` for
    top-level fields); an unknown key raises ``ValueError`` listing the known ones. Values take the
    type of the value they replace (or of the dataclass default) and sizes, rates and budgets must
    be positive.
    """
    import copy

    out = copy.deepcopy(dict(recipe))
    defaults, types = _schema_keys(schema)
    known = {**defaults, **_flatten(out)}
    for spec in overrides or []:
        key, eq, text = spec.partition("=")
        key = key.strip()
        if not (eq and key):
            raise ValueError(f"--set '{spec}': expected KEY=VALUE, e.g. trainer.epochs=5")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"--set: unknown recipe key '{key}'{hint}; known keys: {', '.join(sorted(known))}")
        value = _coerce(key, text, known[key], types.get(key, ""))
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        known[key] = value
    return out


#: recipe sections -> the config dataclasses they feed, per engine (lets --set reach fields a recipe omits)
SCHEMAS: dict[str, dict[str, str]] = {
    "sequential": {"trainer": "textrec.models.seq_trainer:SeqTrainerConfig",
                   "backbone": "textrec.models.backbone:BackboneConfig"},
    "p5": {"trainer": "textrec.p5.trainer:P5TrainConfig", "model": "textrec.p5.model:P5Config",
           "serializer": "textrec.p5.serializer:SerializerConfig"},
    "erra": {"trainer": "textrec.explain.trainer:TrainConfig", "data": "textrec.explain.data:DataConfig",
             "aspects": "textrec.explain.aspects:AspectConfig"},
    "query": {"": "textrec.query.grpo_config:QueryGRPOConfig"},
}


def schema(engine: str) -> dict[str, type]:
    """The config dataclasses of an engine's recipe sections (those that import; see ``SCHEMAS``)."""
    import importlib

    out: dict[str, type] = {}
    for section, target in SCHEMAS.get(engine, {}).items():
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name, None)
        if cls is not None and dataclasses.is_dataclass(cls):
            out[section] = cls
    return out


def recipe_from_args(args: argparse.Namespace, engine: str | None = None) -> dict[str, Any]:
    """Load ``args.recipe`` and apply ``args.overrides`` (checked against ``engine``'s config classes)."""
    from textrec.recipes import load_recipe

    return apply_overrides(load_recipe(args.recipe), getattr(args, "overrides", None),
                           schema(engine) if engine else None)
