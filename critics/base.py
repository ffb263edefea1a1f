"""The base of the critics here, and the two trivial ones (the protocol is :class:`core.Critic`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from core.critique import Critique, StepJudgement
from core.problem import Problem
from core.protocols import Critic

__all__ = ["Critic", "BaseCritic", "NullCritic", "RandomStepCritic"]


class BaseCritic:
    """Gives a critic the batched call for free; model critics override it to batch their ``generate``."""

    name = "base"

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique:  # pragma: no cover - abstract
        raise NotImplementedError

    def critique_batch(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[Critique]:
        check_batch(problems, steps)
        return [self.critique(p, s) for p, s in zip(problems, steps)]


def check_batch(problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> None:
    """A batched critique needs one step list per problem."""
    if len(problems) != len(steps):
        raise ValueError(f"{len(problems)} problems but {len(steps)} step lists")


class NullCritic(BaseCritic):
    """No feedback: the actor-alone baseline."""

    name = "none"

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique:
        return Critique.abstain()


class RandomStepCritic(BaseCritic):
    """A trivial baseline: calls a solution wrong with probability ``p_wrong``, at a uniformly random step."""

    name = "random"

    def __init__(self, p_wrong: float = 0.5, seed: int = 0):
        self.p_wrong, self.rng = p_wrong, random.Random(seed)

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique:
        if not steps or self.rng.random() >= self.p_wrong:
            return Critique(tuple(StepJudgement(k, True) for k in range(1, len(steps) + 1)))
        k = self.rng.randint(1, len(steps))
        return Critique(tuple(StepJudgement(i, i < k) for i in range(1, k + 1)))
