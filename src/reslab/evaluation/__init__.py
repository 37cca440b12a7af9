"""Evaluation as the paper does it: top-1/top-5 error in its views (scores.py), of a
model in memory or of a saved run on its own data split (run.py)."""

from .run import evaluate_run, run_data
from .scores import NonFiniteScores, class_scores, evaluate, topk_errors

__all__ = ["NonFiniteScores", "class_scores", "evaluate", "evaluate_run", "run_data", "topk_errors"]
