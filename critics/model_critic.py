"""``ModelCritic``: a critique model behind any LM backend (``critic=model``).

The model reads ``Problem: ...\\nSolution:\\n<steps>\\nCritique:\\n`` and writes the critique in the one critique
format. The same class serves the trained tiny critic (``HFBackend`` on a local folder), any checkpoint, and a
served model (``OpenAIBackend``); only the backend and the prompt template change.

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

__all__ = ["ModelCritic", "parse_model_critique"]


def parse_model_critique(text: str, num_steps: int) -> Critique:
    """Read a model's critique, ignoring whatever it wrote after its ``Hint:`` (or ``Verdict:``) line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    end = len(lines)
    for i, line in enumerate(lines):
        low = line.strip().lower()
        if low.startswith("verdict"):
            end = i + 1
            if i + 1 < len(lines) and lines[i + 1].strip().lower().startswith("hint"):
                end = i + 2
            break
    return Critique.parse("\n".join(lines[:end]), num_steps=num_steps)


class ModelCritic(BaseCritic):
    """Greedy critiques from a critique model, all solutions of a batch in one ``generate`` call."""

    name = "model"

    def __init__(self, backend: Any, template: Any, max_new_tokens: int = 320):
        from agents.backends.base import SamplingParams

        self.backend, self.template = backend, template
        self.sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
        self.parse_failures = 0
        self.calls = 0
        self.generated_tokens = 0

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique:
        return self.critique_batch([problem], [steps])[0]

    def critique_batch(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[Critique]:
        check_batch(problems, steps)
        if not problems:
            return []
        prompts = [self.template.critique_prompt(p.question, s) for p, s in zip(problems, steps)]
        outputs = self.backend.generate(prompts, self.sampling)
        critiques = []
        for lines, completions in zip(steps, outputs):
            completion = completions[0]
            self.calls += 1
            self.generated_tokens += completion.num_tokens
            text = self.template.decode(completion.text)
            try:
                critique = parse_model_critique(text, len(lines))
            except CritiqueParseError as err:
                self.parse_failures += 1
                critique = Critique(abstained=True, extras={"unparsed": text, "error": str(err)})
            critique.extras["tokens"] = completion.num_tokens
            critiques.append(critique)
        return critiques
