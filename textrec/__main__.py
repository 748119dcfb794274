"""``python -m textrec``: the same command line as the ``textrec`` script."""

from textrec.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
