"""Metrics over episode records, critic scores, voting and test-time scaling, W&B tracking, the results format
and the report (tables and plots)."""

from evaluation.metrics import accuracy_by_difficulty
from evaluation.report import format_table
from evaluation.results import write_results

__all__ = ["accuracy_by_difficulty", "format_table", "write_results"]
