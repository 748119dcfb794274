"""Recommenders: the shared interface, baselines, SASRec, and the text-based engines."""

from textrec.models.base import Recommender, TrainView, register_model

__all__ = ["Recommender", "TrainView", "register_model"]
