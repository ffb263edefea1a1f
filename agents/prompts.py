"""Prompt templates: the one place where the text an actor model reads is defined.

A solve prompt is ``Problem: ...\\nSolution:\\n`` and the model writes ``Step 1: ...`` lines and ``Answer: ...``.
A refine prompt puts the critic's feedback between the problem and the solution, followed by the steps the
critic kept, so the model continues from the flagged step. A critique prompt is the whole solution followed by
``Critique:\\n``; the critic model writes the critique in the one critique format (``critics/critique.py``).
The same template serves training (SFT examples) and inference (the actor), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.codec import NumberCodec

__all__ = ["PromptTemplate"]


@dataclass(frozen=True)
class PromptTemplate:
    problem_prefix: str = "Problem: "
    feedback_prefix: str = "Feedback: "
    solution_header: str = "Solution:\n"
    critique_header: str = "Critique:\n"
    number_format: str = "plain"

    @property
    def codec(self) -> NumberCodec:
        return NumberCodec(self.number_format)

    def header(self, question: str, feedback: str = "") -> str:
        """Everything before the solution lines (model text, numbers encoded)."""
        text = f"{self.problem_prefix}{question}\n"
        if feedback:
            text += f"{self.feedback_prefix}{feedback}\n"
        return self.codec.encode(text + self.solution_header)

    def solution_lines(self, steps: Sequence[str]) -> str:
        """Solution lines in model text, each ending with a newline."""
        return "".join(self.codec.encode(step) + "\n" for step in steps)

    def prompt(self, question: str, steps: Sequence[str] = (), feedback: str = "") -> str:
        return self.header(question, feedback) + self.solution_lines(steps)

    def completion(self, steps: Sequence[str]) -> str:
        """The target text for SFT: the remaining lines, the last one without a trailing newline."""
        return self.solution_lines(steps).removesuffix("\n")

    def critique_prompt(self, question: str, steps: Sequence[str]) -> str:
        return self.prompt(question, steps) + self.codec.encode(self.critique_header)

    def critique_completion(self, critique_text: str) -> str:
        return self.codec.encode(critique_text)

    def decode(self, model_text: str) -> str:
        """Model text back to canonical text (ordinary numbers)."""
        return self.codec.decode(model_text)
