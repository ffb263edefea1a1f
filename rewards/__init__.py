"""Answer extraction, math-verify equivalence, sympy step checks and the reward."""

from rewards.answer import (
    ExtractedAnswer,
    answers_equal,
    extract_answer,
    is_answer_line,
    last_boxed,
    normalize_latex,
    parse_number,
)
from rewards.steps import Computation, StepCheck, check_step, find_computations, format_number
from rewards.verifier import VerificationResult, reward, verify_response

__all__ = [
    "Computation",
    "ExtractedAnswer",
    "StepCheck",
    "VerificationResult",
    "answers_equal",
    "check_step",
    "extract_answer",
    "find_computations",
    "format_number",
    "is_answer_line",
    "last_boxed",
    "normalize_latex",
    "parse_number",
    "reward",
    "verify_response",
]
