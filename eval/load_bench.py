"""Moved: the load benchmark is ``textrec bench load`` (``textrec/benchmarks/load.py``).

    python eval/load_bench.py ARGS...   ==   textrec bench load ARGS...
"""

from __future__ import annotations

import sys

from textrec.benchmarks.load import synthetic_artifact

__all__ = ["synthetic_artifact"]

if __name__ == "__main__":
    from textrec.cli import main

    sys.exit(main(["bench", "load", *sys.argv[1:]]))
