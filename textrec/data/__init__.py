"""Data model, loaders, splits and diagnostics."""

from textrec.data.dataset import DataError, RecDataset, SkipReport

__all__ = ["DataError", "RecDataset", "SkipReport"]
