"""Stage 3 of AutoMathCritique: keep a critique only if it is borne out (Monte Carlo refinement check).

* A critique that says the response is **correct** is kept only when the verifier agrees.
* A critique that says it is **wrong** is handed to the actor with the response cut before the flagged step,
  ``samples`` times; it is kept when at least ``threshold`` of those refinements reach the gold answer. A
  critique that flags a response the verifier accepts goes through the same check (the step may really be
  wrong even though the answer came out right), so only helpful critiques survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from autocritique.annotate import Annotation
from core.sampling import SamplingParams
from envs.math_env import feedback_summary
from rewards.answer import split_solution
from rewards.verifier import verify_response

__all__ = ["FilterDecision", "decide", "refinement_filter"]


@dataclass(frozen=True)
class FilterDecision:
    keep: bool
    reason: str  # why it was dropped ("" when kept)
    refinements: int = 0
    fixed: int = 0


def decide(says_correct: bool, verifier_correct: bool, refinements: int, fixed: int,
           threshold: float) -> FilterDecision:
    """The keep/drop rule on its own, so it can be tested by hand."""
    if says_correct:
        if verifier_correct:
            return FilterDecision(True, "")
        return FilterDecision(False, "says correct but the answer is wrong")
    if refinements == 0:
        return FilterDecision(True, "", 0, 0)  # the filter is off
    if fixed / refinements >= threshold:
        return FilterDecision(True, "", refinements, fixed)
    return FilterDecision(False, "refinements with the critique do not reach the answer", refinements, fixed)


def refinement_filter(annotations: Sequence[Annotation], actor: Any, samples: int = 2, threshold: float = 0.5,
                      temperature: float = 1.0, seed: int = 0) -> list[FilterDecision]:
    """One decision per annotation (dropped annotations stay dropped); refinements run in one batched call."""

    prompts, where = [], []
    for i, a in enumerate(annotations):
        if a.critique is None or a.critique.is_correct or samples == 0:
            continue
        first = a.critique.first_error_step
        kept = list(a.response.steps[: first - 1])
        header = actor.template.header(a.response.problem.question, feedback_summary(a.critique),
                                       previous=a.response.steps, critique=a.critique)
        prompts.append(header + actor.template.solution_lines(kept))
        where.append((i, kept))
    fixed = [0] * len(annotations)
    if prompts:
        sampling = replace(actor.sampling, n=samples, temperature=temperature, seed=seed)
        if not isinstance(sampling, SamplingParams):  # pragma: no cover - a foreign actor
            raise TypeError("actor.sampling must be SamplingParams")
        for (i, kept), completions in zip(where, actor.backend.generate(prompts, sampling)):
            answer = annotations[i].response.problem.answer
            for c in completions:
                steps = kept + list(split_solution(actor.template.decode(c.text)))
                fixed[i] += verify_response("\n".join(steps), answer).correct
    decisions = []
    for i, a in enumerate(annotations):
        if a.critique is None:
            decisions.append(FilterDecision(False, a.dropped or "not annotated"))
            continue
        says_correct = a.critique.is_correct
        n = 0 if says_correct else samples
        decisions.append(decide(says_correct, a.response.answer_correct, n, fixed[i], threshold))
    return decisions
