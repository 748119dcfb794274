"""Recommenders: the shared interface, baselines, SASRec, and the text-based engines.

Importing this package imports no model; ``textrec.registry`` finds them by name.
"""

from textrec.models.base import Recommender, TrainView

__all__ = ["Recommender", "TrainView"]
