"""Stage 2 of AutoMathCritique: turn each response into a step-level critique in the project's one format.

An :class:`Annotator` sees what a careful human annotator would: the problem, its gold answer and reference
solution, the response, and the injected error's location when it is known. ``OracleAnnotator`` uses the
reference-aware :class:`~critics.OracleCritic` (synthetic data, GSM8K with its ``<<a*b=c>>`` notes);
``LMAnnotator`` asks any LM backend (for instance a strong model behind an OpenAI-compatible server) and reads
its answer in the project's format or the paper's, dropping and counting what it cannot read.

Annotations are stored in *training form* (:func:`training_form`): step lines up to the first error, the
explanation on the first wrong step only, the verdict and the hint, which is what a critic model learns to write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.prompts import ANNOTATION_PROMPT
from autocritique.flawed import FlawedResponse
from core.critique import Critique, CritiqueParseError, StepJudgement
from core.sampling import SamplingParams
from critics.oracle import OracleCritic
from critics.paper_format import read_critique

__all__ = ["Annotation", "Annotator", "OracleAnnotator", "LMAnnotator", "training_form", "read_critique"]


@dataclass
class Annotation:
    """The annotator's critique of one response, or ``None`` with the reason it was dropped."""

    response: FlawedResponse
    critique: Critique | None
    dropped: str = ""
    raw: str = ""


class Annotator(Protocol):
    name: str

    def annotate(self, responses: Sequence[FlawedResponse]) -> list[Annotation]: ...


def training_form(critique: Critique) -> Critique:
    """Keep the step lines up to the first error, the explanation only on that step; verdict and hint stay."""
    first = critique.first_error_step
    kept = []
    for j in critique.steps:
        if first is not None and j.index > first:
            break
        keep_feedback = first is not None and j.index == first
        kept.append(StepJudgement(j.index, j.correct, j.check, j.feedback if keep_feedback else "", j.is_answer))
    return Critique(tuple(kept), hint=critique.hint if first is not None else "")


class OracleAnnotator:
    """Reference-aware annotation; on synthetic problems it locates 99.7 % of injected errors."""

    name = "oracle"

    def __init__(self) -> None:
        self.critic = OracleCritic()

    def annotate(self, responses: Sequence[FlawedResponse]) -> list[Annotation]:
        out = []
        for r in responses:
            if not r.problem.steps:
                out.append(Annotation(r, None, "no reference solution"))
                continue
            out.append(Annotation(r, training_form(self.critic.critique(r.problem, r.steps))))
        return out




@dataclass
class LMAnnotator:
    """Critiques written by a language model; output that is in neither format is dropped and counted."""

    backend: Any
    sampling: Any = None
    prompt: str = ANNOTATION_PROMPT
    template: Any = None  # a ChatTemplate for an instruct model (None: the prompt as raw text)
    name: str = "lm"
    parse_failures: Counter = field(default_factory=Counter)

    def annotate(self, responses: Sequence[FlawedResponse]) -> list[Annotation]:
        sampling = self.sampling or SamplingParams(max_new_tokens=768, temperature=0.0)
        prompts = [self._prompt(r) for r in responses]
        outputs = self.backend.generate(prompts, sampling) if prompts else []
        out = []
        for r, completions in zip(responses, outputs):
            text = completions[0].text
            try:
                critique = read_critique(text, len(r.steps), fit=True)
            except CritiqueParseError as err:
                self.parse_failures[str(err).split(":")[0]] += 1
                out.append(Annotation(r, None, "unparsable annotator output", raw=text))
                continue
            out.append(Annotation(r, training_form(critique), raw=text))
        return out

    def _prompt(self, r: FlawedResponse) -> str:
        location = (f"(The first mistake was put at step {r.error_step}; check that it really is one.)"
                    if r.error_step else "")
        request = self.prompt.format(question=r.problem.question, reference="\n".join(r.problem.steps) or "(none)",
                                  answer=r.problem.answer, location=location,
                                  response="\n".join(r.steps))
        return self.template.chat(request) if self.template is not None else request
