"""``SelfCheckCritic``: the actor re-derives each step itself and code compares the values (``critic=self``).

For step k the actor is given the problem and the solution's lines 1..k-1 followed by ``Step k:``, and writes
the step again greedily; the step is wrong when the value it reaches differs from the one the solution states.
No training is needed, and it is the baseline a trained critic has to beat. It cannot see the actor's
systematic greedy mistakes: asked again, the actor makes them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.critique import Critique, StepJudgement
from core.problem import Problem
from core.sampling import SamplingParams
from critics.base import BaseCritic, check_batch
from rewards.answer import answers_equal, extract_answer, is_answer_line
from rewards.steps import find_computations, format_number

__all__ = ["SelfCheckCritic"]


class SelfCheckCritic(BaseCritic):
    """Step-wise self-verification over any LM backend, batched over every step of every solution."""

    name = "self"

    def __init__(self, backend: Any, template: Any, max_new_tokens: int = 32):
        self.backend, self.template = backend, template
        self.sampling = SamplingParams(max_new_tokens=max_new_tokens, stop=("\n",))

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique:
        return self.critique_batch([problem], [steps])[0]

    def critique_batch(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[Critique]:
        check_batch(problems, steps)
        prompts, where = [], []
        for i, (problem, lines) in enumerate(zip(problems, steps)):
            for k, line in enumerate(lines, start=1):
                prefix = "Answer:" if is_answer_line(line) else f"Step {k}:"
                prompts.append(self.template.prompt(problem.question, lines[: k - 1])
                               + self.template.codec.encode(prefix))
                where.append((i, k, prefix))
        redone: dict[tuple[int, int], str] = {}
        tokens = [0] * len(steps)
        if prompts:
            for (i, k, prefix), out in zip(where, self.backend.generate(prompts, self.sampling)):
                redone[(i, k)] = self.template.decode(prefix + out[0].text).strip()
                tokens[i] += out[0].num_tokens
        critiques = [self._judge(lines, {k: redone[(i, k)] for k in range(1, len(lines) + 1)})
                     for i, lines in enumerate(steps)]
        for critique, n in zip(critiques, tokens):
            critique.extras["tokens"] = n
        return critiques

    @staticmethod
    def _judge(lines: Sequence[str], redone: dict[int, str]) -> Critique:
        judgements, first, hint = [], None, ""
        for k, line in enumerate(lines, start=1):
            again = redone[k]
            if first is not None:
                what = "The final answer" if is_answer_line(line) else f"Step {k}"
                judgements.append(StepJudgement(k, False, feedback=f"{what} builds on the error in step {first}.",
                                                is_answer=is_answer_line(line)))
                continue
            if is_answer_line(line):
                mine, theirs = extract_answer(again), extract_answer(line)
                ok = theirs is not None and mine is not None and answers_equal(theirs.text, mine.text)
                feedback = "" if ok else f"The final answer should be {mine.text if mine else '?'} by the steps above."
                judgements.append(StepJudgement(k, ok, feedback=feedback, is_answer=True))
            else:
                stated, recomputed = find_computations(line), find_computations(again)
                ok = not stated or not recomputed or stated[-1].stated == recomputed[-1].stated
                check = again.split(":", 1)[-1].strip()
                feedback = "" if ok else (f"Step {k} is wrong: recomputing it gives {recomputed[-1].expression}="
                                          f"{format_number(recomputed[-1].stated)}, not {format_number(stated[-1].stated)}.")
                judgements.append(StepJudgement(k, ok, check, feedback))
            if not judgements[-1].correct:
                first, hint = k, f"Recompute step {k}: {again.split(':', 1)[-1].strip()}."
        return Critique(tuple(judgements), hint=hint)
