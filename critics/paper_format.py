"""Reading and writing the critique format of the AutoMathCritique paper (MathCritique-76k).

The paper's critic answers, for each step::

    Step 1:
    Step sentence: <the step>
    Correctness of the step: Correct | Wrong
    Explanation: <why>

and then ``Correctness of the final answer: Correct | Wrong`` with an ``Explanation``. Its training rows are
ShareGPT conversations (``{"conversations": [{"from": "human", ...}, {"from": "gpt", ...}]}``) for instruct
models or Alpaca rows (``{"instruction", "input", "output"}``) for base models. Export lets critics be trained
elsewhere on data this project makes; import reads released rows into the project's :class:`Critique`.
Brackets around the verdict (``[Correct]``) and missing ``Step k:`` headers are accepted on import.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.prompts import CRITIC_INSTRUCTION
from core.critique import Critique, CritiqueParseError, StepJudgement, check_text, to_paper_text

__all__ = ["PaperCritique", "RefinementRow", "RowFormatError", "to_paper_text", "from_paper_text", "to_sharegpt", "to_alpaca",
           "from_refinement_row", "from_row", "CRITIC_INSTRUCTION", "fit_to_solution",
           "read_critique", "read_rows"]


_VERDICT = r"\[?\s*(correct|wrong|incorrect)\s*\]?"
_SENTENCE_RE = re.compile(r"^step\s+sentence\s*:\s*(.*)$", re.IGNORECASE)
_STEP_VERDICT_RE = re.compile(rf"^correctness\s+of\s+the\s+step\s*:\s*{_VERDICT}", re.IGNORECASE)
_FINAL_VERDICT_RE = re.compile(rf"^correctness\s+of\s+the\s+final\s+answer\s*:\s*{_VERDICT}", re.IGNORECASE)
_EXPLANATION_RE = re.compile(r"^explanation\s*:\s*(.*)$", re.IGNORECASE)
_HEADER_RE = re.compile(r"^step\s+\d+\s*:?\s*$", re.IGNORECASE)


@dataclass
class PaperCritique:
    """One critique read from the paper's format: the solution's lines it quotes, and the verdicts."""

    steps: list[str]
    critique: Critique
    prompt: str = ""  # the human turn / instruction + input, as it was


def from_paper_text(text: str) -> PaperCritique:
    """Parse the paper's critique text; raises :class:`CritiqueParseError` when it is not in that format."""
    if not check_text(text).strip():
        raise CritiqueParseError("empty critique")
    sentences: list[str] = []
    verdicts: list[list] = []  # [correct, explanation]
    final: list | None = None
    explaining: list | None = None  # the verdict whose explanation is being read
    quoted_answer = False  # the last sentence came right before the final-answer verdict: the answer line

    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line or _HEADER_RE.match(line):
            continue
        if m := _SENTENCE_RE.match(line):
            sentences.append(m.group(1).strip())
            explaining = None
        elif m := _FINAL_VERDICT_RE.match(line):
            quoted_answer = len(sentences) == len(verdicts) + 1 and explaining is None
            final = explaining = [m.group(1).lower() == "correct", ""]
        elif m := _STEP_VERDICT_RE.match(line):
            if len(verdicts) >= len(sentences):
                raise CritiqueParseError(f"a step verdict without a 'Step sentence' before it: {line!r}")
            explaining = [m.group(1).lower() == "correct", ""]
            verdicts.append(explaining)
        elif explaining is not None:  # "Explanation: ..." and any lines it runs on over
            m = _EXPLANATION_RE.match(line)
            explaining[1] = (explaining[1] + " " + (m.group(1) if m else line)).strip()
        else:
            raise CritiqueParseError(f"unrecognised line in a paper-format critique: {line!r}")
    if quoted_answer:
        sentences.pop()  # the paper's own rows quote the answer line too, judged by the final-answer verdict
    if len(verdicts) != len(sentences):
        raise CritiqueParseError(f"{len(sentences)} step sentences but {len(verdicts)} step verdicts")
    if final is None:
        raise CritiqueParseError("no 'Correctness of the final answer' line")
    judgements = [StepJudgement(i, ok, feedback="" if ok else why) for i, (ok, why) in enumerate(verdicts, start=1)]
    judgements.append(StepJudgement(len(verdicts) + 1, final[0], feedback="" if final[0] else final[1], is_answer=True))
    return PaperCritique(sentences, Critique(tuple(judgements)))


def _solution_text(question: str, steps: Sequence[str]) -> str:
    return f"Problem: {question}\nSolution:\n" + "\n".join(steps)


def to_sharegpt(question: str, steps: Sequence[str], critique: Critique) -> dict[str, Any]:
    """A ShareGPT conversation row (instruct critics)."""
    return {"conversations": [
        {"from": "human", "value": f"{CRITIC_INSTRUCTION}\n\n{_solution_text(question, steps)}"},
        {"from": "gpt", "value": to_paper_text(critique, steps)},
    ]}


def to_alpaca(question: str, steps: Sequence[str], critique: Critique) -> dict[str, Any]:
    """An Alpaca row (base-model critics)."""
    return {"instruction": CRITIC_INSTRUCTION, "input": _solution_text(question, steps),
            "output": to_paper_text(critique, steps)}


class RowFormatError(CritiqueParseError):
    """A dataset row that is not a critique row; the message names the row and the field."""


def _field(row: dict, key: str, where: str) -> str:
    value = row.get(key, "")
    if not isinstance(value, str):
        raise RowFormatError(f"{where}: field {key!r} is {type(value).__name__}, not text")
    return value


def from_row(row: Any, index: int | None = None) -> PaperCritique:
    """Read a ShareGPT or Alpaca row (the project's or a released MathCritique-76k one); ``index`` names the
    row in errors."""
    where = "row" if index is None else f"row {index}"
    if not isinstance(row, dict):
        raise RowFormatError(f"{where} is {type(row).__name__}, not a dict")
    if "conversations" in row:
        turns = row["conversations"]
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise RowFormatError(f"{where}: field 'conversations' is not a list of turns")
        human = [_field(t, "value", f"{where} turn {i}") for i, t in enumerate(turns) if t.get("from") in ("human", "user")]
        answers = [_field(t, "value", f"{where} turn {i}") for i, t in enumerate(turns)
                   if t.get("from") in ("gpt", "assistant")]
        if not human or not answers:
            raise RowFormatError(f"{where}: a ShareGPT row needs a human turn and a gpt turn")
        parsed = _critique_of(answers[-1], where, "conversations")
        parsed.prompt = human[-1]
        return parsed
    if {"instruction", "output"} <= set(row):
        parsed = _critique_of(_field(row, "output", where), where, "output")
        parsed.prompt = (_field(row, "instruction", where) + "\n\n" + _field(row, "input", where)).strip()
        return parsed
    raise RowFormatError(f"{where}: not a ShareGPT or Alpaca row: keys {sorted(map(str, row))}")


def _critique_of(text: str, where: str, field: str) -> PaperCritique:
    try:
        return from_paper_text(text)
    except CritiqueParseError as err:
        raise RowFormatError(f"{where}: field {field!r}: {err}") from err


@dataclass
class RefinementRow:
    """A row of the paper's refinement data: an attempt, the critique of it, and the refined solution."""

    question: str
    attempt: list[str]
    critique: Critique
    refinement: str
    quoted: list[str] = field(default_factory=list)  # the attempt's steps as the critique quotes them


_ASSISTANT = "Assistant:"
_CRITIQUE_START = "Step sentence:"


def from_refinement_row(row: Any, index: int | None = None) -> RefinementRow:
    """Read an Alpaca row of the paper's refinement data (``instruction``: the question, ``Assistant:`` and the
    attempt, a human turn with the critique in the paper's format; ``output``: the refined solution)."""
    where = "row" if index is None else f"row {index}"
    if not isinstance(row, dict):
        raise RowFormatError(f"{where} is {type(row).__name__}, not a dict")
    instruction, output = _field(row, "instruction", where), _field(row, "output", where)
    head, found, rest = instruction.partition(_ASSISTANT)
    if not found:
        raise RowFormatError(f"{where}: field 'instruction' has no {_ASSISTANT!r} turn with the attempt")
    attempt_text, found, review = rest.partition("Human:")
    start = review.find(_CRITIQUE_START)
    if not found or start < 0:
        raise RowFormatError(f"{where}: field 'instruction' has no critique ({_CRITIQUE_START!r} lines) after the attempt")
    parsed = _critique_of(review[start:], where, "instruction")
    question = head.split("Please also give your final number")[0].strip()
    attempt = [line.strip() for line in attempt_text.replace("<|end_of_text|>", "").splitlines() if line.strip()]
    return RefinementRow(question, attempt, parsed.critique, output.strip(), parsed.steps)


def read_rows(file: Path, what: str = "rows") -> list[Any]:
    """The rows of a paper-format file: one JSON list, or JSONL; ``what`` (the config key) names a missing file."""
    if not file.exists():
        raise FileNotFoundError(f"{what}: no file at {file}")
    text = file.read_text(encoding="utf-8")
    return json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]


def read_critique(text: str, num_steps: int, fit: bool = False) -> Critique:
    """A model's critique in the project's format or the paper's; raises :class:`CritiqueParseError` on neither.

    Text before the first line of the format (a preamble such as "Sure, here is my review:") is ignored. The
    paper's format numbers its own steps: they must match the solution's, unless ``fit`` (a free-form solution
    whose lines the model may quote differently), where they are taken in order, those beyond the solution
    dropped, and the final-answer verdict judges the solution's last line.
    """
    lines = check_text(text).strip().splitlines()
    for start in range(len(lines)):
        body = "\n".join(lines[start:])
        try:
            return Critique.parse(body, num_steps=num_steps)
        except CritiqueParseError:
            pass
        try:
            critique = from_paper_text(body).critique
        except CritiqueParseError:
            pass
        else:
            if len(critique.steps) == num_steps:  # the paper's format numbers its own steps: they must fit
                return critique
            if fit:
                return fit_to_solution(critique, num_steps)
        if start >= 3:  # a preamble longer than that is not a preamble
            break
    raise CritiqueParseError(f"neither the project's nor the paper's critique format: {text[:120]!r}")


def fit_to_solution(critique: Critique, num_steps: int) -> Critique:
    """A paper-format critique on a solution of ``num_steps`` lines: step verdicts in order up to the last line,
    which the final-answer verdict judges."""
    steps = [j for j in critique.steps if not j.is_answer and j.index < num_steps]
    final = [j for j in critique.steps if j.is_answer]
    if final:
        steps.append(StepJudgement(num_steps, final[0].correct, final[0].check, final[0].feedback, is_answer=True))
    return Critique(tuple(steps), hint=critique.hint)
