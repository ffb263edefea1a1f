"""Metrics over episode records, and the one results format every experiment writes."""

from evaluation.metrics import accuracy_by_difficulty, format_table
from evaluation.results import write_results

__all__ = ["accuracy_by_difficulty", "format_table", "write_results"]
