"""An episode as data: what the environment writes and every trainer, metric and tracker reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.critique import Critique
from core.problem import Problem
from core.verification import VerificationResult

__all__ = ["Attempt", "EpisodeRecord", "Generation"]


@dataclass
class Generation:
    """One model call of an episode: the exact token ids it was prompted with and sampled (for trainers)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float] | None = None
    retokenized: bool = False  # some prompt ids came from re-encoding text, not from earlier samples


@dataclass
class Attempt:
    """A solution the critic reviewed; ``cut_at`` is the step it was cut back to (None: it stood).

    ``verification`` is the verifier's result on this attempt's text, stored once by the environment when the
    attempt was a finished solution (None for a reviewed unfinished one), so no reader verifies it again."""

    steps: list[str]
    critique: Critique
    cut_at: int | None
    verification: VerificationResult | None = None
    not_applied: str = ""  # why the critique could not be acted on (it names a step the solution lacks)

    @property
    def correct(self) -> bool:
        return self.verification is not None and self.verification.correct


@dataclass
class EpisodeRecord:
    """Everything that happened in one episode, structured so trainers never re-parse text."""

    problem: Problem
    steps: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    action_errors: list[str] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)  # filled by model actors
    refinement_rounds: int = 0
    turns: int = 0
    final_answer: str | None = None
    verification: VerificationResult | None = None
    total_reward: float = 0.0
    done: bool = False

    @property
    def critiques(self) -> list[Critique]:
        return [a.critique for a in self.attempts]

    @property
    def correct(self) -> bool:
        return self.verification is not None and self.verification.correct

    @property
    def first_correct(self) -> bool:
        """Was the solution right as first written, before any refinement?"""
        return self.attempts[0].correct if self.attempts else self.correct

    @property
    def first_steps(self) -> list[str]:
        """The solution as first written (before any refinement cut it)."""
        return self.attempts[0].steps if self.attempts else self.steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem.to_dict(),
            "steps": list(self.steps),
            "attempts": [{"steps": a.steps, "critique": a.critique.to_dict(), "cut_at": a.cut_at,
                          **({"not_applied": a.not_applied} if a.not_applied else {})} for a in self.attempts],
            "actions": list(self.actions),
            "action_errors": list(self.action_errors),
            "generations": [asdict(g) for g in self.generations],
            "refinement_rounds": self.refinement_rounds,
            "turns": self.turns,
            "final_answer": self.final_answer,
            "verification": asdict(self.verification) if self.verification else None,
            "correct": self.correct,
            "total_reward": self.total_reward,
        }
