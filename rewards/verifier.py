"""The verifier: the episode reward and the reasons behind it.

A response is checked in the cheapest way that is right for it:

1. an explicit answer marker of the project's or GSM8K's formats (``Answer: 36``, ``#### 36``, ``A: 36``,
   "The answer is 36.") stating a plain number, against a plain-number gold: exact rational comparison (the
   last marker in the text wins, so a trailing remark with a number in it does not count; ``4%`` also
   matches a gold ``4``, as percentages are written in GSM8K);
2. the project's step format without an answer line (``Step k: ...`` only, e.g. a solution cut off by the
   token budget), against a plain-number gold: the last number, as the tiny world always has;
3. anything else -- free-form text, LaTeX, several ``\\boxed{}``, "Final Answer: ..." -- through math-verify's
   own extraction and equivalence (``parse`` + ``verify``), which prefers boxed and final-answer statements;
4. when math-verify finds nothing: the marker's text compared as text (``Answer: (C)``), then, for a
   plain-number gold and a response with no LaTeX in it, the last standalone number.
"""

from __future__ import annotations

import re
from typing import Protocol

from core.verification import VerificationResult
from rewards.answer import (
    ANSWER_MARKERS,
    answers_equal,
    clean_answer,
    last_number,
    marker_text,
    math_verify_equal,
    math_verify_parse,
    parse_number,
)

__all__ = ["HasGoldAnswer", "VerificationResult", "verify_response", "reward"]

_LATEX = re.compile(r"\$|\\\(|\\\[|\\[a-zA-Z]+\s*\{")
_STEP_LINE = re.compile(r"^\s*step\s+\d+\s*:", re.IGNORECASE)


class HasGoldAnswer(Protocol):
    answer: str


def _marker(text: str) -> tuple[str, str] | None:
    """``(answer text, method)`` of the last answer marker in ``text``."""
    last = max(((m, method) for method, regex in ANSWER_MARKERS for m in regex.finditer(text)),
               key=lambda found: found[0].start(), default=None)
    answer = clean_answer(marker_text(last[0])) if last else ""
    return (answer, last[1]) if answer else None


def _result(extracted: str | None, gold: str, correct: bool, method: str | None) -> VerificationResult:
    if extracted is None:
        return VerificationResult(None, gold, False, None, "no answer found in the response")
    reason = "equivalent to the gold answer" if correct else f"{extracted!r} is not equivalent to {gold!r}"
    return VerificationResult(extracted, gold, correct, method, reason)


def verify_response(response: str, gold: str, allow_last_number: bool = True) -> VerificationResult:
    """Extract the final answer from ``response`` and compare it with ``gold`` (see the module docstring)."""
    if not isinstance(response, str) or not response.strip():
        return _result(None, gold, False, None)
    gold_number = parse_number(gold)
    marker = _marker(response)
    stated = parse_number(marker[0]) if marker else None
    if stated is not None and gold_number is not None:
        # "The answer is 4%." for GSM8K's gold "4": datasets write a percentage's number without its sign
        percent = marker[0].rstrip().endswith("%") and stated * 100 == gold_number
        return _result(marker[0], gold, stated == gold_number or percent, marker[1])
    latex = bool(_LATEX.search(response))
    if (marker is None and gold_number is not None and not latex and allow_last_number
            and all(_STEP_LINE.match(line) for line in response.splitlines() if line.strip())):
        number = last_number(response)
        if number is not None:
            return _result(number, gold, parse_number(number) == gold_number, "last_number")
    predicted = math_verify_parse(response)
    if predicted:
        return _result(str(predicted[-1]), gold, math_verify_equal(gold, predicted), "math_verify")
    if marker is not None:
        return _result(marker[0], gold, answers_equal(marker[0], gold), marker[1])
    if allow_last_number and gold_number is not None and not latex:
        number = last_number(response, standalone=True)
        if number is not None:
            return _result(number, gold, parse_number(number) == gold_number, "last_number")
    return _result(None, gold, False, None)


def reward(response: str, problem: HasGoldAnswer | str) -> float:
    """1.0 when the response's final answer matches the problem's gold answer, else 0.0."""
    gold = problem if isinstance(problem, str) else problem.answer
    return verify_response(response, gold).reward
