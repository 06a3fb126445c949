"""Evaluation metrics: pure numpy functions per task, and `evaluate_batches`, the trainer's bridge."""
from engine.metrics.classification import (accuracy, best_threshold, classification_report, confusion_matrix, mae, mse,
                                           multilabel_report, pearson, rank_average, regression_report, spearman)
from engine.metrics.evaluate import evaluate_batches, greater_is_better
from engine.metrics.lm import cross_entropy_sum, perplexity
from engine.metrics.retrieval import (cosine_score_blocks, maxsim_score_blocks, per_query_metrics, retrieval_metrics,
                                      retrieval_report, worst_queries)
from engine.metrics.token import entity_report, get_entities

__all__ = [
    "evaluate_batches", "greater_is_better",
    "accuracy", "best_threshold", "classification_report", "confusion_matrix", "mae", "mse", "multilabel_report",
    "pearson", "rank_average",
    "regression_report", "spearman", "cross_entropy_sum", "perplexity",
    "cosine_score_blocks", "maxsim_score_blocks", "per_query_metrics", "retrieval_metrics", "retrieval_report",
    "worst_queries", "entity_report", "get_entities",
]
