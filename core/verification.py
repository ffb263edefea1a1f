"""What the verifier found: a data type every layer reads (the env stores it, metrics and trainers read it)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VerificationResult"]


@dataclass(frozen=True)
class VerificationResult:
    """Why a response got its reward: what was extracted, against what, and the verdict."""

    extracted: str | None
    gold: str
    correct: bool
    method: str | None  # which marker found the answer; None when none was found
    reason: str

    @property
    def reward(self) -> float:
        return 1.0 if self.correct else 0.0
