"""Recommenders: the shared interface, baselines, SASRec, and the text-based engines."""

from textrec.models import baselines, sasrec, text_knn, vqrec  # noqa: F401  (registers the built-in models)
from textrec.models.base import Recommender, TrainView, register_model

__all__ = ["Recommender", "TrainView", "register_model"]
