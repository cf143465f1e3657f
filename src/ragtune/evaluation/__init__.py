"""Scoring retrieval runs: ranking metrics against graded judgments, and span-level scores for chunkings."""

from ragtune.evaluation.metrics import check_metric, evaluate_run, trec_run_lines
from ragtune.evaluation.spans import span_qrels, span_scores

__all__ = ["check_metric", "evaluate_run", "span_qrels", "span_scores", "trec_run_lines"]
