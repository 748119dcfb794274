"""Ranking metrics (full catalog) and, later, text metrics."""

from textrec.metrics.ranking import beyond_accuracy, ranking_metrics, target_ranks, topk_items

__all__ = ["beyond_accuracy", "ranking_metrics", "target_ranks", "topk_items"]
