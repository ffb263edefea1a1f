"""``ModelCritic``: a critique model behind any LM backend (``critic=model``).

The model reads ``Problem: ...\\nSolution:\\n<steps>\\nCritique:\\n`` and writes the critique in the one critique
format, with one addition (:func:`model_text`): each step line first copies the solution's computation, then
gives the critic's own, ``Step 2: 2+9=11 -> 2+17=19 wrong``, so the verdict compares two computations side by
side. Copying what follows ``Step 2:`` from the prompt is the pattern small transformers learn first; without
the copy, tiny critics re-derived every step right and still called every step correct (benchmarks/README.md). The same class serves the trained tiny critic (``HFBackend`` on a local folder), any
checkpoint, and a served model (``OpenAIBackend``); only the backend and the prompt template change.

Output that is not a critique is never a crash: the critique abstains (finds nothing, so the environment does
not refine), the raw text is kept in ``extras["unparsed"]`` and ``parse_failures`` counts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from critics.base import BaseCritic, check_batch
from critics.critique import Critique, CritiqueParseError

if TYPE_CHECKING:
    from envs.problems import Problem

__all__ = ["ModelCritic", "parse_model_critique", "model_text"]

_ARROW = " -> "


def stated_computation(line: str) -> str | None:
    """The solution line's last computation as it states it (``2+9=11``)."""
    from rewards.steps import find_computations, format_number

    comps = find_computations(line)
    return f"{comps[-1].expression}={format_number(comps[-1].stated)}" if comps else None


def model_text(critique: Critique, steps: Sequence[str]) -> str:
    """The critique as a critique model writes it: each check preceded by the solution's computation and ``->``."""
    from dataclasses import replace

    judgements = []
    for j in critique.steps:
        stated = stated_computation(steps[j.index - 1]) if 0 < j.index <= len(steps) and not j.is_answer else None
        judgements.append(replace(j, check=f"{stated}{_ARROW}{j.check}") if j.check and stated is not None else j)
    return replace(critique, steps=tuple(judgements)).render()


def parse_model_critique(text: str, num_steps: int) -> Critique:
    """Read a model's critique, ignoring whatever it wrote after its ``Hint:`` (or ``Verdict:``) line; the copied
    ``<solution's computation> ->`` is dropped from each check, which keeps the critic's own computation only."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    end = len(lines)
    for i, line in enumerate(lines):
        low = line.strip().lower()
        if low.startswith("verdict"):
            end = i + 1
            if i + 1 < len(lines) and lines[i + 1].strip().lower().startswith("hint"):
                end = i + 2
            break
    critique = Critique.parse("\n".join(lines[:end]), num_steps=num_steps)
    from dataclasses import replace

    return replace(critique, steps=tuple(replace(j, check=j.check.split(_ARROW)[-1]) for j in critique.steps))


def verdicts_from_checks(critique: Critique, steps: Sequence[str]) -> Critique:
    """Re-judge each step by comparing the critic's own check with the solution's value in code.

    A diagnostic: it separates how well a critique model *derives* each step from how well it *compares*.
    """
    from critics.critique import StepJudgement
    from rewards.steps import find_computations

    judgements = []
    for j in critique.steps:
        if j.is_answer or not j.check:
            judgements.append(j)
            continue
        mine, theirs = find_computations(j.check), find_computations(steps[j.index - 1])
        ok = not mine or not theirs or mine[-1].stated == theirs[-1].stated
        feedback = "" if ok else f"Step {j.index} is wrong: it should be {j.check}."
        judgements.append(StepJudgement(j.index, ok, j.check, feedback))
        if not ok:
            return Critique(tuple(judgements), hint=f"Step {j.index} should be {j.check}.")
    if all(j.correct for j in judgements):
        return Critique(tuple(judgements))
    return critique


class ModelCritic(BaseCritic):
    """Greedy critiques from a critique model, all solutions of a batch in one ``generate`` call.

    ``verdicts="model"`` takes the model's verdicts; ``"checks"`` compares the model's own checks with the
    solution in code (:func:`verdicts_from_checks`).
    """

    name = "model"

    def __init__(self, backend: Any, template: Any, max_new_tokens: int = 320, verdicts: str = "model",
                 cache: dict | None = None):
        from agents.backends.base import SamplingParams

        if verdicts not in ("model", "checks"):
            raise ValueError(f"verdicts must be 'model' or 'checks', got {verdicts!r}")
        self.verdicts = verdicts
        self.backend, self.template = backend, template
        self.sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
        self.parse_failures = 0
        self.calls = 0
        self.generated_tokens = 0
        self.cache = cache  # (question, steps) -> (text, tokens): lets two critics share one model's outputs

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique:
        return self.critique_batch([problem], [steps])[0]

    def critique_batch(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[Critique]:
        check_batch(problems, steps)
        if not problems:
            return []
        keys = [(p.question, tuple(s)) for p, s in zip(problems, steps)]
        todo = [i for i, k in enumerate(keys) if self.cache is None or k not in self.cache]
        outputs = self.backend.generate([self.template.critique_prompt(problems[i].question, steps[i]) for i in todo],
                                        self.sampling) if todo else []
        fresh = {keys[i]: (self.template.decode(c[0].text), c[0].num_tokens) for i, c in zip(todo, outputs)}
        if self.cache is not None:
            self.cache.update(fresh)
        critiques = []
        for key, lines in zip(keys, steps):
            text, tokens = fresh[key] if key in fresh else self.cache[key]
            self.calls += 1
            self.generated_tokens += tokens
            try:
                critique = parse_model_critique(text, len(lines))
                if self.verdicts == "checks":
                    critique = verdicts_from_checks(critique, lines)
            except CritiqueParseError as err:
                self.parse_failures += 1
                critique = Critique(abstained=True, extras={"unparsed": text, "error": str(err)})
            critique.extras["tokens"] = tokens
            critiques.append(critique)
        return critiques
