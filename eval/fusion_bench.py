"""Moved: ``textrec bench textfusion MODE ...`` (textrec/benchmarks/textfusion.py); this forwards to it."""

import sys

from textrec.cli import main

if __name__ == "__main__":
    mode = {"published": "quality"}.get(sys.argv[1], sys.argv[1]) if len(sys.argv) > 1 else "quality"
    sys.exit(main(["bench", "textfusion", mode, *sys.argv[2:]]))
