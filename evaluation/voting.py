"""Parallel test-time scaling over k samples of one problem: voting, critic-filtered voting, best-of-k, pass@k.

Every function takes the samples in the order they were drawn and uses the first ``k``, so the curves over
k = 1, 2, 4, ... come from one set of samples. Answers are compared after :func:`answer_key`, so ``"1/2"`` and
``"0.5"`` vote together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from rewards.answer import parse_number

__all__ = ["Sample", "answer_key", "majority_vote", "critic_filtered_vote", "best_of_k", "pass_at_k", "METHODS",
           "choose"]


@dataclass(frozen=True)
class Sample:
    """One sampled solution: its final answer (None if it gave none), whether it is right, the critic's verdict."""

    answer: str | None
    correct: bool
    accepted: bool = True  # the critic found no error
    tokens: int = 0         # generated for it (actor and critic)
    scored_tokens: int = 0  # read by a critic that scores lines instead of generating (not generated)


def answer_key(answer: str | None) -> str | None:
    if answer is None:
        return None
    number = parse_number(answer)
    if number is not None:
        return str(Fraction(number))
    return " ".join(answer.split()).lower()


def _vote(samples: Sequence[Sample]) -> Sample | None:
    """The sample carrying the most common answer; ties go to the answer seen first."""
    counts: dict[str, int] = {}
    first: dict[str, Sample] = {}
    for s in samples:
        key = answer_key(s.answer)
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, s)
    if not counts:
        return None
    best = max(counts.values())
    return next(first[k] for k in counts if counts[k] == best)


def majority_vote(samples: Sequence[Sample], k: int) -> Sample | None:
    return _vote(samples[:k])


def critic_filtered_vote(samples: Sequence[Sample], k: int) -> Sample | None:
    """Vote among the samples the critic accepts; when it rejects all of them, vote among all."""
    kept = [s for s in samples[:k] if s.accepted]
    return _vote(kept) if kept else _vote(samples[:k])


def best_of_k(samples: Sequence[Sample], k: int) -> Sample | None:
    """The first sample the critic accepts (the critic's verdict is its only score), else the first sample."""
    head = samples[:k]
    return next((s for s in head if s.accepted), head[0] if head else None)


def pass_at_k(samples: Sequence[Sample], k: int) -> bool:
    """At least one of the first k is right: the ceiling any selection method can reach."""
    return any(s.correct for s in samples[:k])


METHODS = {
    "majority": majority_vote,
    "critic_filtered_majority": critic_filtered_vote,
    "best_of_k": best_of_k,
}


def choose(method: str, samples: Sequence[Sample], k: int) -> bool:
    """Is the answer ``method`` picks from the first k samples right? (pass@k for ``method="pass@k"``.)"""
    if method == "pass@k":
        return pass_at_k(samples, k)
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; valid: {', '.join(METHODS)}, pass@k")
    picked = METHODS[method](samples, k)
    return picked is not None and picked.correct
