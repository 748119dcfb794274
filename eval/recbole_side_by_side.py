"""Kept for old commands: ``python eval/recbole_side_by_side.py ARGS`` runs ``textrec bench recbole ARGS``."""

import sys

from textrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "recbole", *sys.argv[1:]]))
