"""Memory estimates checked before a model allocates, so a fit fails fast with advice instead of
swapping or being killed.

``available_memory()`` is the smaller of the machine's available memory (``psutil`` when
installed, else ``/proc/meminfo``'s ``MemAvailable``) and what the cgroup (container) limit
still allows. ``require_memory`` raises :class:`InsufficientMemoryError` naming how much is
needed, how much is available and what to change.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

#: Peak bytes per co-occurring item pair while ItemKNN builds its similarity (product, COO
#: copies, float64 values, CSC conversion, per-column top-k sort); measured with tracemalloc at
#: 73-82, and tests/test_memory_guards.py keeps it honest.
ITEMKNN_BYTES_PER_PAIR = 80
#: Fraction of the available memory a single fit may plan to use.
USABLE_FRACTION = 0.9


class InsufficientMemoryError(MemoryError):
    """A model would need more memory than is available; the message says what to change."""


def format_bytes(n_bytes: float) -> str:
    """``1.5 GiB`` / ``300 MiB``: how memory needs are printed."""
    return _fmt(n_bytes)


def _fmt(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _cgroup_headroom() -> int | None:
    """Bytes the cgroup v2 / v1 memory limit still allows, or ``None`` without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(int(limit) - usage, 0)
    return None


def available_memory() -> int | None:
    """Bytes of memory available to this process now, or ``None`` when it cannot be told."""
    override = os.environ.get("TEXTREC_AVAILABLE_MEMORY")  # tests, and users who know better
    if override:
        return int(float(override))
    avail: int | None = None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError, IndexError):
            avail = None
    cg = _cgroup_headroom()
    if cg is not None:
        avail = cg if avail is None else min(avail, cg)
    return avail


def require_memory(needed: float, what: str, advice: str) -> None:
    """Raise :class:`InsufficientMemoryError` when ``needed`` bytes exceed the usable memory."""
    avail = available_memory()
    if avail is None or needed <= USABLE_FRACTION * avail:
        return
    raise InsufficientMemoryError(f"{what} needs about {_fmt(needed)} of memory, but only {_fmt(avail)} is "
                                  f"available. {advice}")


def ease_memory_bytes(n_items: int, float64: bool) -> int:
    """Peak bytes of an EASE fit: Gram matrix, its Cholesky factor and inverse (3 dense n×n in the
    solve dtype) plus the float32 weight matrix kept."""
    return int(n_items) ** 2 * (3 * (8 if float64 else 4) + 4)


def cooccurrence_pairs(x: sp.csr_matrix, exact_above: int = 5_000_000) -> int:
    """Number of item pairs that co-occur in some user's row of ``x`` (nonzeros of ``xᵀx``), or a
    tight upper bound, computed without building the product.

    The cheap bound ``min(Σ_u d_u², n²)`` (``d_u`` = items of user ``u``) is used when it is
    below ``exact_above``; otherwise the exact structural count is taken from scipy's own
    pre-allocation pass (linear memory), when that routine is available.
    """
    n = x.shape[1]
    d = np.diff(x.indptr).astype(np.float64)
    bound = int(min(float((d * d).sum()), float(n) * n))
    if bound < exact_above:
        return bound
    try:
        from scipy.sparse import _sparsetools

        xt = sp.csr_matrix(x.T)
        return int(_sparsetools.csr_matmat_maxnnz(n, n, xt.indptr.astype(np.int64), xt.indices.astype(np.int64),
                                                  x.indptr.astype(np.int64), x.indices.astype(np.int64)))
    except (ImportError, AttributeError, TypeError, ValueError):
        return bound
