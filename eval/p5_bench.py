"""Kept for old commands: ``python eval/p5_bench.py ARGS`` runs ``textrec bench p5 ARGS``."""

import sys

from textrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "p5", *sys.argv[1:]]))
