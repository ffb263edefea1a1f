"""Stage 1 of AutoMathCritique: responses with mistakes in them, each tagged with where it came from.

Three sources, as in the paper:

* ``sampled``: the actor's own samples at a temperature; right or wrong by the verifier (natural mistakes);
* ``located``: error-location control: a correct solution is kept up to step i-1, step i is made wrong, and the
  actor writes the rest, so the later steps build on the error the way they do after a real mistake;
* ``typed``: error-type control: one mistake of a chosen kind (calculation slip, misread operand, wrong
  operation, skipped step) written into the reference solution programmatically.

Synthetic problems are corrupted in code (``envs.synthetic.corrupt_solution``). For problems without a program
(real datasets) :func:`prompted_errors` asks an LM backend to make the mistake.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.prompts import PROMPTED_ERROR_PROMPT
from core.problem import Problem
from core.sampling import SamplingParams
from critics.base import NullCritic
from envs.math_env import EnvConfig
from envs.synthetic import ALL_ERROR_KINDS, corrupt_solution
from rewards.answer import is_answer_line, split_solution
from rewards.steps import find_computations, format_number
from rewards.verifier import verify_response
from rollout.loop import rollout

__all__ = ["FlawedResponse", "SOURCES", "sample_responses", "located_errors", "typed_errors", "text_errors",
           "prompted_errors"]

SOURCES = ("sampled", "located", "typed", "prompted", "reference")


@dataclass(frozen=True)
class FlawedResponse:
    """A response to a problem; ``error_step``/``error_kind`` are known only when the mistake was injected."""

    problem: Problem
    steps: tuple[str, ...]
    source: str
    error_step: int | None = None
    error_kind: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown response source {self.source!r}; valid: {', '.join(SOURCES)}")

    @property
    def answer_correct(self) -> bool:
        return verify_response("\n".join(self.steps), self.problem.answer).correct


def sample_responses(problems: Sequence[Problem], actor: Any, samples_per_problem: int = 4,
                     batch_size: int = 64, seed: int = 0, env: EnvConfig | None = None) -> list[FlawedResponse]:
    """The actor's own solutions (its sampling settings decide the temperature), through the environment
    (``env``: the run's settings; no refinement either way)."""
    repeated = [p for p in problems for _ in range(samples_per_problem)]
    records = rollout(repeated, actor, NullCritic(), replace(env or EnvConfig(), max_refinements=0),
                      batch_size=batch_size, seed=seed)
    temperature = getattr(getattr(actor, "sampling", None), "temperature", None)
    return [FlawedResponse(r.problem, tuple(r.steps), "sampled", meta={"temperature": temperature})
            for r in records if r.steps]


def typed_errors(problems: Sequence[Problem], rng: random.Random, per_problem: int = 1,
                 kinds: Sequence[str] = ALL_ERROR_KINDS) -> list[FlawedResponse]:
    """Reference solutions with one programmatic mistake each, at a uniformly drawn step."""
    out = []
    for problem in problems:
        for _ in range(per_problem):
            step = rng.randint(1, problem.difficulty)
            bad = corrupt_solution(problem, step, rng.choice(list(kinds)), rng)
            out.append(FlawedResponse(problem, bad.steps, "typed", bad.error_step, bad.kind))
    return out


def text_errors(problems: Sequence[Problem], rng: random.Random) -> list[FlawedResponse]:
    """Error-type control on text solutions without a program (GSM8K): a calculation slip at a random step.

    The result of one computation on a random line that has one is changed, and every later mention of that
    number is changed with it, so the later steps build on the slip. Lines without a checkable computation
    are never chosen.
    """

    out = []
    for problem in problems:
        lines = list(problem.steps)
        candidates = [i for i, line in enumerate(lines) if not is_answer_line(line) and find_computations(line)]
        if not candidates:
            continue
        i = rng.choice(candidates)
        comp = find_computations(lines[i])[-1]
        old = format_number(comp.stated)
        if comp.stated.denominator != 1 or old not in lines[i]:
            continue
        value = int(comp.stated)
        new = str(max(0, value + rng.choice([-1, 1]) * rng.randint(1, max(2, abs(value) // 5 + 1))))
        if new == old:
            new = str(value + 1)
        pattern = re.compile(rf"(?<![\d.]){re.escape(old)}(?![\d])")
        lines[i] = _replace_result(lines[i], old, new, pattern)
        for j in range(i + 1, len(lines)):
            lines[j] = pattern.sub(new, lines[j])
        out.append(FlawedResponse(problem, tuple(lines), "typed", i + 1, "calculation"))
    return out


def _replace_result(text: str, old: str, new: str, pattern: re.Pattern) -> str:
    """Change the stated result (``=old`` and every mention after it, as in ``<<a*b=old>>old``), not the operands."""
    at = text.rfind(f"={old}")
    at = at + 1 if at >= 0 else text.rfind(old)
    return text[:at] + pattern.sub(new, text[at:])


def located_errors(problems: Sequence[Problem], actor: Any, rng: random.Random, per_problem: int = 1,
                   kinds: Sequence[str] = ALL_ERROR_KINDS) -> list[FlawedResponse]:
    """Keep the reference up to a wrong step i, then let the actor continue from the mistake."""
    seeds, prompts = [], []
    for problem in problems:
        for _ in range(per_problem):
            step = rng.randint(1, problem.difficulty)
            bad = corrupt_solution(problem, step, rng.choice(list(kinds)), rng)
            keep = min(bad.error_step, len(bad.steps) - 1)  # through the wrong line, never the answer line
            seeds.append((problem, bad, bad.steps[:keep]))
            prompts.append(actor.template.prompt(problem.question, bad.steps[:keep]))
    return _continue(actor, seeds, prompts, "located")


def prompted_errors(problems: Sequence[Problem], backend: Any, rng: random.Random,
                    kinds: Sequence[str] = ("calculation", "operand", "operation", "skipped"),
                    sampling: Any = None, template: Any = None, source: str = "prompted") -> list[FlawedResponse]:
    """For real models: ask the backend to continue a reference solution with a mistake of a given kind at step i.

    The prompt shows the reference steps before i and names the kind of error; the model's continuation becomes
    the response. Whether it really is wrong is left to the annotator and the verifier, as in the paper.
    """

    sampling = sampling or SamplingParams(max_new_tokens=512, temperature=0.7)
    seeds, prompts = [], []
    for problem in problems:
        if not problem.steps:
            continue
        lines = [s for s in problem.steps if not is_answer_line(s)] or list(problem.steps)
        step = rng.randint(1, len(lines))
        kind = rng.choice(list(kinds))
        request = PROMPTED_ERROR_PROMPT.format(question=problem.question, kind=_KIND_WORDS.get(kind, kind), step=step,
                                               prefix="\n".join(lines[: step - 1]) or "(none)")
        prompts.append(template.chat(request) if template is not None else request)
        seeds.append((problem, step, kind, tuple(lines[: step - 1])))
    out = []
    for (problem, step, kind, prefix), completions in zip(seeds, backend.generate(prompts, sampling)):
        rest = split_solution(completions[0].text)
        if rest:
            out.append(FlawedResponse(problem, prefix + rest, source, step, kind))
    return out


_KIND_WORDS = {"calculation": "calculation error", "operand": "misread quantity from the problem",
               "operation": "wrong operation", "skipped": "skipped step"}


def _continue(actor: Any, seeds: list, prompts: list[str], source: str) -> list[FlawedResponse]:
    if not prompts:
        return []
    sampling = replace(actor.sampling, n=1)
    out = []
    for (problem, bad, kept), completions in zip(seeds, actor.backend.generate(prompts, sampling)):
        rest = split_solution(actor.template.decode(completions[0].text))
        out.append(FlawedResponse(problem, tuple(kept) + rest, source, bad.error_step, bad.kind))
    return out
