"""Kept for old commands: ``python eval/erra_bench.py ARGS`` runs ``textrec bench erra ARGS``."""

import sys

from textrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "erra", *sys.argv[1:]]))
