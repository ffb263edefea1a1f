"""The one critique format: what every critic returns and what critique models are trained to write.

Text form (one line per solution line, then the overall verdict)::

    Step 1: 4*7=28 correct
    Step 2: 23+28=52 wrong | Step 2 is wrong: 23+28 is 51, not 52; the rest builds on it.
    Step 3: 52-15=37 wrong | Step 3 builds on the error in step 2.
    Final answer: wrong
    Verdict: wrong, first error at step 2
    Hint: Recompute step 2: 23+28=51.

Each step line carries the critic's own check of the step (``4*7=28``, recomputed, not copied) *before* its
verdict, so a model critic computes the value first and compares second. Feedback follows ``|``. Lines after
the first error may be omitted; a critique of an unfinished solution has no ``Final answer`` line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StepJudgement", "Critique", "CritiqueParseError", "MAX_CRITIQUE_CHARS", "check_text", "step_number", "to_paper_text"]

# Line heads only: what follows a head is split with str methods, so every parse is linear in the text.
_STEP_HEAD_RE = re.compile(r"step[ \t]+(\d+)[ \t]*:", re.IGNORECASE)
_VERDICT_WORD_RE = re.compile(r"\b(correct|wrong)[ \t]*$", re.IGNORECASE)
_FINAL_HEAD_RE = re.compile(r"final[ \t]+answer[ \t]*:", re.IGNORECASE)
_VERDICT_HEAD_RE = re.compile(r"verdict[ \t]*:[ \t]*(correct|wrong)\b", re.IGNORECASE)
_FIRST_ERROR_RE = re.compile(r"first[ \t]+error[ \t]+at[ \t]+step[ \t]+(\d+)", re.IGNORECASE)
_HINT_HEAD_RE = re.compile(r"hint[ \t]*:", re.IGNORECASE)
MAX_CRITIQUE_CHARS = 50_000  # longer model output is not a critique (and would only cost time to read)
MAX_STEP_DIGITS = 6


def check_text(text: object, what: str = "critique") -> str:
    """``text`` if it is a string a parser should read, else :class:`CritiqueParseError` saying why."""
    if not isinstance(text, str):
        raise CritiqueParseError(f"{what} is {type(text).__name__}, not text")
    if len(text) > MAX_CRITIQUE_CHARS:
        raise CritiqueParseError(f"{what} is {len(text):,} characters, over the {MAX_CRITIQUE_CHARS:,} a critique "
                                 f"may have")
    return text


def step_number(digits: str, line: str) -> int:
    """A step number from model text; absurd ones (``Step 10000000000:``) are a parse error, not an ``int``."""
    if len(digits) > MAX_STEP_DIGITS:
        raise CritiqueParseError(f"step number with {len(digits)} digits in line {line[:80]!r}")
    return int(digits)


class CritiqueParseError(ValueError):
    """Critic output that is not in the critique format; the message quotes the offending text."""


@dataclass(frozen=True)
class StepJudgement:
    """The verdict on one line of a solution (``index`` is 1-based; the answer line is the last index)."""

    index: int
    correct: bool
    check: str = ""  # the critic's own computation for this step, e.g. "4*7=28"
    feedback: str = ""
    is_answer: bool = False

    def render(self) -> str:
        verdict = "correct" if self.correct else "wrong"
        if self.is_answer:
            head = f"Final answer: {verdict}"
        else:
            head = f"Step {self.index}: {self.check + ' ' if self.check else ''}{verdict}"
        return f"{head} | {self.feedback}" if self.feedback else head


@dataclass(frozen=True)
class Critique:
    """Step-level feedback on a (possibly unfinished) solution."""

    steps: tuple[StepJudgement, ...] = ()
    hint: str = ""
    abstained: bool = False  # a critic that gives no feedback at all (NullCritic)
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def first_error_step(self) -> int | None:
        wrong = [j.index for j in self.steps if not j.correct]
        return min(wrong) if wrong else None

    @property
    def final_answer_correct(self) -> bool | None:
        for j in self.steps:
            if j.is_answer:
                return j.correct
        return None

    @property
    def is_correct(self) -> bool:
        """No error found in what was shown (an abstaining critic finds none)."""
        return self.first_error_step is None

    @property
    def flagged(self) -> tuple[StepJudgement, ...]:
        return tuple(j for j in self.steps if not j.correct)

    def feedback_for(self, index: int) -> str:
        for j in self.steps:
            if j.index == index:
                return j.feedback
        return ""

    @classmethod
    def abstain(cls) -> Critique:
        return cls(abstained=True)

    def render(self) -> str:
        if self.abstained:
            return ""
        lines = [j.render() for j in sorted(self.steps, key=lambda j: j.index)]
        first = self.first_error_step
        lines.append("Verdict: correct" if first is None else f"Verdict: wrong, first error at step {first}")
        if self.hint:
            lines.append(f"Hint: {self.hint}")
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str, num_steps: int | None = None) -> Critique:
        """Read the text form back; raises :class:`CritiqueParseError` on anything else.

        ``num_steps`` (the solution's line count, answer line included) lets the parser number the
        ``Final answer`` judgement and reject step numbers that do not exist.
        """
        if not check_text(text).strip():
            raise CritiqueParseError("empty critique")
        judgements: dict[int, StepJudgement] = {}
        final: tuple[bool, str] | None = None
        verdict: tuple[bool, int | None] | None = None
        hint = ""
        for raw in text.strip().splitlines():
            line = raw.strip()
            if not line:
                continue
            if m := _STEP_HEAD_RE.match(line):
                index = step_number(m.group(1), line)
                body, _, feedback = line[m.end():].partition("|")
                word = _VERDICT_WORD_RE.search(body)
                if word is None:
                    raise CritiqueParseError(f"step line without a verdict: {line[:120]!r}")
                if index < 1 or (num_steps is not None and index > num_steps):
                    raise CritiqueParseError(f"step number {index} out of range in line {line[:120]!r}")
                if index in judgements:
                    raise CritiqueParseError(f"step {index} judged twice (line {line[:120]!r})")
                judgements[index] = StepJudgement(index, word.group(1).lower() == "correct",
                                                  body[: word.start()].strip(), feedback.strip())
            elif m := _FINAL_HEAD_RE.match(line):
                body, _, feedback = line[m.end():].partition("|")
                if body.strip().lower() not in ("correct", "wrong"):
                    raise CritiqueParseError(f"final-answer line without a verdict: {line[:120]!r}")
                final = (body.strip().lower() == "correct", feedback.strip())
            elif m := _VERDICT_HEAD_RE.match(line):
                first = _FIRST_ERROR_RE.search(line, m.end())
                verdict = (m.group(1).lower() == "correct", step_number(first.group(1), line) if first else None)
            elif m := _HINT_HEAD_RE.match(line):
                hint = line[m.end():].strip()
            else:
                raise CritiqueParseError(f"unrecognised critique line {line[:120]!r}")
        if verdict is None:
            raise CritiqueParseError("critique has no 'Verdict:' line")
        if verdict[1] is not None and (verdict[1] < 1 or (num_steps is not None and verdict[1] > num_steps)):
            raise CritiqueParseError(f"verdict names step {verdict[1]}, which is not a step of the solution")
        if final is not None:
            answer_index = num_steps if num_steps is not None else max(judgements, default=0) + 1
            if answer_index in judgements:
                raise CritiqueParseError(f"step {answer_index} is both a step and the final answer")
            judgements[answer_index] = StepJudgement(answer_index, final[0], "", final[1], is_answer=True)
        critique = cls(tuple(judgements[i] for i in sorted(judgements)), hint=hint)
        if verdict[0] != critique.is_correct:
            # the overall verdict wins over a missing step line: "Verdict: wrong, first error at step 3"
            if verdict[0] or verdict[1] is None:
                raise CritiqueParseError(f"verdict {'correct' if verdict[0] else 'wrong'} contradicts the step lines")
            judgements[verdict[1]] = StepJudgement(verdict[1], False)
            critique = cls(tuple(judgements[i] for i in sorted(judgements)), hint=hint)
        return critique

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [
                {"index": j.index, "correct": j.correct, "check": j.check, "feedback": j.feedback,
                 "is_answer": j.is_answer} for j in self.steps
            ],
            "first_error_step": self.first_error_step,
            "final_answer_correct": self.final_answer_correct,
            "is_correct": self.is_correct,
            "hint": self.hint,
            "abstained": self.abstained,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Critique:
        steps: Sequence[dict] = row.get("steps", [])
        return cls(tuple(StepJudgement(s["index"], s["correct"], s.get("check", ""), s.get("feedback", ""),
                                       s.get("is_answer", False)) for s in steps),
                   hint=row.get("hint", ""), abstained=row.get("abstained", False))


def to_paper_text(critique: Critique, steps: Sequence[str]) -> str:
    """The paper's per-step critique text for ``steps`` (the answer line is judged as the final answer)."""
    by_index = {j.index: j for j in critique.steps}
    blocks = []
    answer = None
    for index, line in enumerate(steps, start=1):
        judgement = by_index.get(index)
        if judgement is not None and judgement.is_answer:
            answer = judgement
            continue
        correct = judgement.correct if judgement else True
        explanation = (judgement.feedback if judgement and judgement.feedback else
                       f"The step is correct{': ' + judgement.check if judgement and judgement.check else ''}.")
        blocks.append(f"Step {index}:\nStep sentence: {line}\nCorrectness of the step: "
                      f"{'Correct' if correct else 'Wrong'}\nExplanation: {explanation}")
    if answer is None:
        final_ok = critique.is_correct
        final_why = "The final answer follows from correct steps." if final_ok else \
            f"The solution has an error at step {critique.first_error_step}."
    else:
        final_ok = answer.correct
        final_why = answer.feedback or "The final answer follows from correct steps."
    blocks.append(f"Correctness of the final answer: {'Correct' if final_ok else 'Wrong'}\nExplanation: {final_why}")
    return "\n\n".join(blocks)
