"""Kept for old commands: ``python eval/vqrec_bench.py ARGS`` runs ``textrec bench vqrec ARGS``."""

import sys

from textrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "vqrec", *sys.argv[1:]]))
