"""A scripted actor: writes a problem's reference solution, optionally with one injected mistake.

It needs no model, which makes it the actor of the environment demo and of tests: it makes its mistake on the
first attempt and, once the critic's feedback arrives, continues from the cut with the reference steps, the
way an actor that understood the critique would.
"""

from __future__ import annotations

import random
from typing import Any

from core.problem import Problem
from envs.synthetic import ERROR_KINDS, corrupt_solution

__all__ = ["ScriptedActor"]


class ScriptedActor:
    """One step per call; ``error_step``/``error_kind`` pick the mistake (``None``: a correct solution)."""

    def __init__(self, error_step: int | None = None, error_kind: str = "calculation", seed: int = 0):
        if error_kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {error_kind!r}; valid: {', '.join(ERROR_KINDS)}")
        self.error_step, self.error_kind, self.seed = error_step, error_kind, seed
        self._script: list[str] = []
        self._problem_id: str | None = None

    def begin(self, problem: Problem) -> None:
        if problem.steps is None:
            raise ValueError(f"problem {problem.id} has no reference steps to script from")
        self._problem_id = problem.id
        self._script = list(problem.steps)
        self._reference = list(problem.steps)
        if self.error_step is not None and "program" in problem.metadata:
            step = min(self.error_step, len(problem.steps) - 1)
            corrupted = corrupt_solution(problem, step, self.error_kind, random.Random(f"{self.seed}:{problem.id}"))
            self._script = list(corrupted.steps)

    def act(self, observation: dict[str, str], info: dict[str, Any]) -> str:
        problem: Problem = info["record"].problem
        if problem.id != self._problem_id:
            self.begin(problem)
        done = len(info["record"].steps)
        if observation.get("feedback"):
            self._script = self._reference  # the critique was heard: write the rest correctly
        return self._script[done] if done < len(self._script) else self._script[-1]
