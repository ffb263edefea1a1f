"""Accuracy by difficulty and friends, computed from episode records (never from re-parsed text)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from core.episode import EpisodeRecord

__all__ = ["accuracy_by_difficulty", "paired_change"]


def accuracy_by_difficulty(records: Iterable[EpisodeRecord]) -> dict[str, Any]:
    """``{"by_difficulty": {d: {"n", "correct", "accuracy"}}, "overall": {...}}``."""
    groups: dict[Any, list[bool]] = defaultdict(list)
    for record in records:
        groups[record.problem.difficulty].append(record.correct)
    table = {str(d): _cell(v) for d, v in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))}
    every = [c for v in groups.values() for c in v]
    return {"by_difficulty": table, "overall": _cell(every)}


def _cell(values: Sequence[bool]) -> dict[str, Any]:
    n = len(values)
    return {"n": n, "correct": sum(values), "accuracy": round(sum(values) / n, 4) if n else None}


def paired_change(diffs: Sequence[int]) -> dict[str, Any]:
    """The mean of per-problem differences (after - before, each -1, 0 or 1: the same problems measured twice) and
    its 95 % half-width (normal approximation): a change of a few points on a few hundred problems is read against
    the answers that flipped either way, not against the accuracy's own spread."""
    n = len(diffs)
    mean = sum(diffs) / n if n else float("nan")
    var = sum((d - mean) ** 2 for d in diffs) / max(1, n - 1)
    return {"change": round(mean, 4), "ci95": round(1.96 * (var / n) ** 0.5, 4) if n else float("nan"),
            "gained": sum(d > 0 for d in diffs), "lost": sum(d < 0 for d in diffs), "n": n}
