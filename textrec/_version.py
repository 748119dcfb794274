"""The textrec version (one place; the package and every artifact read it)."""

__version__ = "0.2.0"
