"""Small file helpers: every artifact textrec writes goes through a temp file and a rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022  # no /proc (not Linux): the common default


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 minus the umask)."""
    return 0o666 & ~current_umask()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False,
                                     encoding="utf-8") as tmp:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
        tmp_name = tmp.name
    os.chmod(tmp_name, _umask_mode())  # mkstemp files are 0600; artifacts should be readable
    os.replace(tmp_name, path)


def atomic_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """A (temporary, final) pair in the same folder: write to the first, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)  # hidden until renamed
    os.close(fd)
    os.chmod(tmp, _umask_mode())  # mkstemp files are 0600; artifacts should be readable
    return Path(tmp), path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_file(p) as tmp:`` write ``tmp``; on success it is fsynced and renamed to ``p``,
    on any failure (Ctrl-C included) it is removed and ``p`` is untouched."""
    tmp, final = atomic_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write pretty JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")
