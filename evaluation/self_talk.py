"""How a self-talk model's own checks and corrections fare, from its episode records.

An episode played with ``action_format="self_talk"`` holds the steps as written (``attempts[0].steps``), the
model's verdict on each (``attempts[0].critique``) and the solution after its fixes (``record.steps``): turn k
was fixed where the two differ. With a reference-aware judge (the oracle, on generated problems) every turn gets
a truth -- was the written step right, given the steps that stand before it? was its fix? -- and from those:
the precision and recall of its checks, how often a correction is right, and the per-turn rates the
self-correction literature reports (wrong -> right, right -> wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.episode import EpisodeRecord
from core.protocols import Critic
from evaluation.metrics import accuracy_by_difficulty
from rewards.answer import is_answer_line

__all__ = ["self_talk_summary"]


def self_talk_summary(records: Sequence[EpisodeRecord], judge: Critic | None = None) -> dict[str, Any]:
    n = len(records)
    malformed = [r for r in records if any(e.startswith("self-talk:") for e in r.action_errors)]
    turns = [_turns(r) for r in records]
    out: dict[str, Any] = {
        "accuracy": accuracy_by_difficulty(records),
        "episodes": n,
        "mean_tokens": round(sum(len(g.completion_ids) for r in records for g in r.generations) / n, 1) if n else None,
        "malformed": len(malformed),
        "malformed_examples": [next(e for e in r.action_errors if e.startswith("self-talk:")) for r in malformed[:5]],
        "with_correction": sum(bool(fixed) for _, fixed in turns),
        "corrections": sum(len(fixed) for _, fixed in turns),
        "flags": sum(len(flagged) for flagged, _ in turns),
    }
    if judge is not None:
        out["checks"] = _judged(records, turns, judge)
    return out


def _turns(record: EpisodeRecord) -> tuple[list[int], list[int]]:
    """The 1-based turns the model's own check called wrong, and those of them it fixed (the written step and the
    one that stands differ)."""
    if not record.attempts:
        return [], []
    written, final = record.attempts[0].steps, record.steps
    flagged = [j.index for j in record.attempts[0].critique.steps if not j.correct and not j.is_answer]
    fixed = [k for k in flagged if k <= min(len(written), len(final)) and written[k - 1] != final[k - 1]]
    return flagged, fixed


def _judged(records: Sequence[EpisodeRecord], turns: Sequence[tuple[list[int], list[int]]],
            judge: Critic) -> dict[str, Any]:
    """Per-turn truth from ``judge``: each written step and each fix judged after the steps that stand before it."""
    counts = {"true_flags": 0, "false_flags": 0, "missed": 0, "passed": 0,
              "wrong_to_right": 0, "wrong_to_wrong": 0, "right_to_wrong": 0, "right_to_right": 0}
    for r, (flagged, fixed) in zip(records, turns):
        if not r.attempts:
            continue
        written, final = r.attempts[0].steps, r.steps
        for k in range(1, min(len(written), len(final)) + 1):
            if is_answer_line(written[k - 1]):
                continue
            right = _step_right(judge, r, list(final[: k - 1]) + [written[k - 1]], k)
            if k in flagged:
                counts["true_flags" if not right else "false_flags"] += 1
            else:
                counts["passed" if right else "missed"] += 1
            if k in fixed:
                fix_right = _step_right(judge, r, list(final[:k]), k)
                counts[f"{'right' if right else 'wrong'}_to_{'right' if fix_right else 'wrong'}"] += 1
    flags = counts["true_flags"] + counts["false_flags"]
    wrong = counts["true_flags"] + counts["missed"]
    fixes = sum(counts[k] for k in ("wrong_to_right", "wrong_to_wrong", "right_to_wrong", "right_to_right"))
    return {**counts,
            "precision": round(counts["true_flags"] / flags, 4) if flags else None,
            "recall": round(counts["true_flags"] / wrong, 4) if wrong else None,
            "fix_right": round((counts["wrong_to_right"] + counts["right_to_right"]) / fixes, 4) if fixes else None}


def _step_right(judge: Critic, record: EpisodeRecord, steps: list[str], k: int) -> bool:
    critique = judge.critique(record.problem, steps)
    return next((j.correct for j in critique.steps if j.index == k), True)
