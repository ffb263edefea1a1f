"""The verifier: the episode reward and the reasons behind it."""

from __future__ import annotations

from typing import Protocol

from core.verification import VerificationResult
from rewards.answer import answers_equal, extract_answer

__all__ = ["HasGoldAnswer", "VerificationResult", "verify_response", "reward"]


class HasGoldAnswer(Protocol):
    answer: str


def verify_response(response: str, gold: str, allow_last_number: bool = True) -> VerificationResult:
    """Extract the final answer from ``response`` and compare it with ``gold``."""
    found = extract_answer(response, allow_last_number=allow_last_number)
    if found is None:
        return VerificationResult(None, gold, False, None, "no answer found in the response")
    correct = answers_equal(found.text, gold)
    reason = "equivalent to the gold answer" if correct else f"{found.text!r} is not equivalent to {gold!r}"
    return VerificationResult(found.text, gold, correct, found.method, reason)


def reward(response: str, problem: HasGoldAnswer | str) -> float:
    """1.0 when the response's final answer matches the problem's gold answer, else 0.0."""
    gold = problem if isinstance(problem, str) else problem.answer
    return verify_response(response, gold).reward
