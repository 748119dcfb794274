"""Kept for old commands: ``python eval/query_bench.py ARGS`` runs ``textrec bench query ARGS``."""

import sys

from textrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "query", *sys.argv[1:]]))
