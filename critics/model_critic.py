"""``ModelCritic``: a critique model behind any LM backend (``critic=model``).

The model reads ``Problem: ...\\nSolution:\\n<steps>\\nCritique:\\n`` and judges the solution line by line. Two
ways to generate, one text format each:

* ``generation="stepwise"`` (the project's critique models): for each line the model first writes its *own*
  computation of the step, then the critic's code reads the solution's computation in after ``| says``, with
  the two results set side by side, digit under digit (``=153 =160``), then the model writes its verdict and
  explanation::

      Step 1: 29+22=51 | says 29+22=51 | =051 =051 | correct
      Step 2: 51*3=153 | says 51*3=160 | =153 =160 | wrong | Step 2 is wrong: 51*3 is 153, not 160; the rest builds on it.

  The model never has to copy a value out of the solution: tiny critics asked to copy wrote their own
  (right) computation in its place and so called every step correct (benchmarks/results/critic_formats.md).
  The side-by-side results make the comparison local: in model text (digits least-significant first) each
  digit of one result sits a fixed distance from the same digit of the other, which a tiny model learns to
  compare; two computations of different lengths at different places in the line it did not learn to compare
  in a few hundred drill steps. Judging stops at the first wrong line.
* ``generation="whole"``: one generation in the one critique format (``critics/critique.py``), for served or
  hub models prompted to write a whole critique.

``verdicts`` says who decides a line is wrong: ``"model"``, the model's own verdict; ``"checks"``, its computation
compared with the solution's in code (a diagnostic); ``"likelihood"``, the model first scores the solution's line
as a continuation of its own critique (``backend.score``, one forward pass, nothing generated) and accepts it
when it would itself have written that computation with probability at least ``accept_probability``; only the
lines it doubts get its own computation and verdict. On long problems a tiny critic re-deriving a right step
often picks another operand (its own computation is a guess among several it finds likely), and a verdict on
that guess flags right steps; asking how likely the stated step is asks the easier question.

Output that is not a critique is never a crash: the critique abstains (finds nothing, so the environment does
not refine), the raw text is kept in ``extras["unparsed"]`` and ``parse_failures`` counts it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.critique import Critique, CritiqueParseError, StepJudgement, check_text, step_number
from core.problem import Problem
from core.sampling import SamplingParams
from critics.base import BaseCritic, check_batch
from critics.paper_format import read_critique
from rewards.answer import extract_answer, is_answer_line
from rewards.steps import find_computations, format_number

__all__ = ["ModelCritic", "ModelLine", "model_text", "model_lines", "parse_model_text", "parse_whole_critique",
           "stated_value", "side_by_side", "judged_line"]

VERDICTS = ("model", "checks", "likelihood")
SAYS = " | says "
RESULT_WIDTH = 3  # whole-number results are zero-padded to this many digits when set side by side
_MODEL_HEAD_RE = re.compile(r"(?:step[ \t]+(\d+)|(final[ \t]+answer))[ \t]*:", re.IGNORECASE)
_SIDE_BY_SIDE_RE = re.compile(r"=\S*[ \t]+=\S*")


class _LineParts(NamedTuple):
    index: int | None  # None: the final-answer line
    own: str
    stated: str
    correct: bool
    feedback: str


def read_model_line(line: str) -> _LineParts | None:
    """One stepwise line (``Step 2: 51*3=153 | says 51*3=160 | =153 =160 | wrong | ...``) in parts, or ``None``
    when it is not one. Split on ``|`` with str methods: linear in the line, whatever the model wrote."""
    m = _MODEL_HEAD_RE.match(line)
    if m is None:
        return None
    parts = line[m.end():].split("|")
    says = parts[1].strip() if len(parts) > 2 else ""
    if says[:4].lower() != "says" or not says[4:5].isspace():
        return None
    i = 3 if _SIDE_BY_SIDE_RE.fullmatch(parts[2].strip()) else 2
    if i >= len(parts) or parts[i].strip().lower() not in ("correct", "wrong"):
        return None
    index = None if m.group(2) else step_number(m.group(1), line)
    return _LineParts(index, parts[0].strip(), says[5:].strip(), parts[i].strip().lower() == "correct",
                      "|".join(parts[i + 1:]).strip())


def side_by_side(own: str, stated: str) -> str:
    """The two results of a judged line next to each other (``=153 =160``), whole numbers zero-padded to the
    same width so that, digit by digit, they line up."""
    def pad(value: str) -> str:
        return value.zfill(RESULT_WIDTH) if value.isdigit() else value

    return f"={pad(_result(own))} ={pad(_result(stated))}"


def judged_line(head: str, own: str, stated: str) -> str:
    """A stepwise line up to its verdict: what the model reads before it judges."""
    return f"{head} {own}{SAYS}{stated} | {side_by_side(own, stated)} |"


class ModelLine(NamedTuple):
    """One judged line of a stepwise critique, in parts: ``head`` (``Step 2:``), the critic's ``own``
    computation, the solution's ``stated`` one, the verdict and the explanation."""

    head: str
    own: str
    stated: str
    correct: bool
    feedback: str

    @property
    def to_verdict(self) -> str:
        return judged_line(self.head, self.own, self.stated)

    @property
    def text(self) -> str:
        line = f"{self.to_verdict} {'correct' if self.correct else 'wrong'}"
        return f"{line} | {self.feedback}" if self.feedback else line


def stated_value(line: str) -> str | None:
    """What a solution line states, as the critic quotes it: the last computation (``2+9=11``), or the answer
    of an answer line; ``None`` for a line with neither (it is not judged)."""
    if is_answer_line(line):
        found = extract_answer(line, allow_last_number=True)
        return found.text if found else ""
    comps = find_computations(line)
    return f"{comps[-1].expression}={format_number(comps[-1].stated)}" if comps else None


def _head(judgement: StepJudgement) -> str:
    return "Final answer:" if judgement.is_answer else f"Step {judgement.index}:"


def model_text(critique: Critique, steps: Sequence[str], answer: str | None = None) -> str:
    """A (training-form) critique as a stepwise critique model writes it.

    The critic's own value of an answer line is the gold ``answer`` when the line is wrong (what the critic
    should have reached), else the stated one.
    """
    return "\n".join(line.text for line in model_lines(critique, steps, answer))


def model_lines(critique: Critique, steps: Sequence[str], answer: str | None = None) -> list[ModelLine]:
    """The lines of :func:`model_text`, in parts."""
    lines = []
    for j in sorted(critique.steps, key=lambda j: j.index):
        stated = stated_value(steps[j.index - 1]) if 0 < j.index <= len(steps) else None
        if stated is None:
            continue
        if j.is_answer:
            own = stated if j.correct or answer is None else answer
        else:
            own = j.check or stated
        lines.append(ModelLine(_head(j), own, stated, j.correct, j.feedback))
    return lines


def _hint(judgement: StepJudgement, stated: str) -> str:
    if judgement.is_answer:
        return f"The answer should be {judgement.check}." if judgement.check else ""
    same_expression = judgement.check.split("=")[0] == stated.split("=")[0]
    return (f"Recompute step {judgement.index}: {judgement.check}." if same_expression
            else f"Step {judgement.index} should be {judgement.check}.")


def parse_model_text(text: str, steps: Sequence[str]) -> Critique:
    """Stepwise model text back to a :class:`Critique`: lines up to the first wrong one; the hint is the
    critic's own computation of that line. Raises :class:`CritiqueParseError` on a line in no known form."""
    check_text(text)
    judgements: list[StepJudgement] = []
    hint = ""
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = read_model_line(line)
        if parts is None:
            raise CritiqueParseError(f"unrecognised critique line {line[:120]!r}")
        index = len(steps) if parts.index is None else parts.index
        if not 0 < index <= len(steps):
            raise CritiqueParseError(f"step number {index} out of range in line {line[:120]!r}")
        judgement = StepJudgement(index, parts.correct, parts.own, parts.feedback, is_answer=parts.index is None)
        judgements.append(judgement)
        if not judgement.correct:
            hint = _hint(judgement, parts.stated)
            break
    if not judgements:
        raise CritiqueParseError("empty critique")
    return Critique(tuple(judgements), hint=hint)


def parse_whole_critique(text: str, num_steps: int) -> Critique:
    """A whole critique in the one format, ignoring whatever the model wrote after its ``Hint:`` (or
    ``Verdict:``) line."""
    lines = [line for line in check_text(text).strip().splitlines() if line.strip()]
    end = len(lines)
    for i, line in enumerate(lines):
        if line.strip().lower().startswith("verdict"):
            end = i + 2 if i + 1 < len(lines) and lines[i + 1].strip().lower().startswith("hint") else i + 1
            break
    return Critique.parse("\n".join(lines[:end]), num_steps=num_steps)


@dataclass
class _Review:
    """One solution being judged line by line."""

    steps: Sequence[str]
    prompt: str          # model text so far: the critique prompt and the finished judgement lines
    line: int = 0        # 0-based index of the next line to judge
    text: str = ""       # canonical judgement lines so far
    tokens: int = 0      # generated
    scored: int = 0      # lines accepted by their likelihood (scored, nothing generated)
    scored_tokens: int = 0  # tokens of the solution's lines the model scored (read in one pass, not generated)
    done: bool = False
    failure: str = ""

    def next_line(self) -> tuple[int, str] | None:
        """Skip the lines that state nothing; ``(index, stated)`` of the next one to judge."""
        while self.line < len(self.steps):
            stated = stated_value(self.steps[self.line])
            if stated is not None:
                return self.line + 1, stated
            self.line += 1
        return None


class ModelCritic(BaseCritic):
    """Greedy critiques from a critique model, all solutions of a batch in each ``generate`` call.

    ``verdicts="checks"`` skips the model's verdict and compares its own computation with the solution's in
    code: a diagnostic that separates how well the model derives a step from how well it compares.
    ``verdicts="likelihood"`` accepts a line the model finds likely enough (see the module docstring).
    """

    name = "model"

    def __init__(self, backend: Any, template: Any, max_new_tokens: int = 64, verdicts: str = "model",
                 generation: str = "stepwise", accept_probability: float = 0.1):
        if verdicts not in VERDICTS:
            raise ValueError(f"verdicts must be one of {', '.join(VERDICTS)}, got {verdicts!r}")
        if generation not in ("stepwise", "whole"):
            raise ValueError(f"generation must be 'stepwise' or 'whole', got {generation!r}")
        if verdicts == "likelihood" and generation != "stepwise":
            raise ValueError("verdicts='likelihood' scores the lines one by one: it needs generation='stepwise'")
        if not 0 < accept_probability <= 1:
            raise ValueError(f"accept_probability must be in (0, 1], got {accept_probability}")
        self.accept_probability = accept_probability
        self.verdicts, self.generation = verdicts, generation
        self.backend, self.template = backend, template
        self.sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
        self._own = SamplingParams(max_new_tokens=min(32, max_new_tokens), temperature=0.0, stop=("|", "\n"))
        self._verdict = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, stop=("\n",))
        self.parse_failures = 0
        self.calls = 0
        self.generated_tokens = 0

    def variant(self, verdicts: str | None = None, accept_probability: float | None = None) -> ModelCritic:
        """The same loaded model and settings with other verdicts or another bound (no second copy of the model)."""
        return ModelCritic(self.backend, self.template, self.sampling.max_new_tokens, verdicts or self.verdicts,
                           self.generation,
                           self.accept_probability if accept_probability is None else accept_probability)

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique:
        return self.critique_batch([problem], [steps])[0]

    def critique_batch(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[Critique]:
        check_batch(problems, steps)
        if not problems:
            return []
        if self.generation == "whole":
            return self._whole(problems, steps)
        reviews = [_Review(s, self.template.critique_prompt(p.question, s)) for p, s in zip(problems, steps)]
        while True:
            active = []
            for r in reviews:
                nxt = None if r.done else r.next_line()
                r.done = nxt is None
                if nxt is not None:
                    active.append((r, nxt))
            if not active:
                break
            self._judge_lines(active)
        return [self._finish(r) for r in reviews]

    def _judge_lines(self, active: list[tuple[_Review, tuple[int, str]]]) -> None:
        """One line of every active review: the model's own computation, then (unless ``checks``) its verdict."""
        encode, decode = self.template.codec.encode, self.template.decode
        heads = ["Final answer:" if _is_answer(r.steps[r.line]) else f"Step {index}:" for r, (index, _) in active]
        if self.verdicts == "likelihood":
            active, heads = self._accept_likely(active, heads)
            if not active:
                return
        owns = self.backend.generate([r.prompt + encode(h) for (r, _), h in zip(active, heads)], self._own)
        pending = []
        for (r, (_, stated)), head, out in zip(active, heads, owns):
            own = decode(out[0].text).split("|")[0].strip()
            r.tokens += out[0].num_tokens
            line = judged_line(head, own, stated)
            if self.verdicts == "checks":
                right = _result(own) == _result(stated)
                self._advance(r, f"{line} {'correct' if right else 'wrong'}")
            else:
                pending.append((r, line))
        if not pending:
            return
        verdicts = self.backend.generate([r.prompt + encode(line) for r, line in pending], self._verdict)
        for (r, line), out in zip(pending, verdicts):
            r.tokens += out[0].num_tokens
            self._advance(r, line + decode(out[0].text).rstrip("\n"))

    def _accept_likely(self, active: list[tuple[_Review, tuple[int, str]]], heads: list[str]) -> tuple[list, list]:
        """Accept the lines whose stated computation the model would write itself with probability at least
        ``accept_probability`` (as its own computation, up to the ``|`` that ends it); return the others."""
        import math

        encode = self.template.codec.encode
        continuations = [encode(f" {stated} |") for _, (_, stated) in active]
        scores = self.backend.score([r.prompt + encode(h) for (r, _), h in zip(active, heads)], continuations)
        bound = math.log(self.accept_probability)
        doubted, doubted_heads = [], []
        tokenizer = self.backend.tokenizer
        for (r, (index, stated)), head, score, text in zip(active, heads, scores, continuations):
            r.scored_tokens += len(tokenizer(text, add_special_tokens=False)["input_ids"]) if tokenizer else 0
            if score >= bound:
                r.scored += 1
                self._advance(r, f"{judged_line(head, stated, stated)} correct")
            else:
                doubted.append((r, (index, stated)))
                doubted_heads.append(head)
        return doubted, doubted_heads

    def _advance(self, review: _Review, line: str) -> None:
        review.text += line + "\n"
        review.prompt += self.template.codec.encode(line + "\n")
        review.line += 1
        try:
            parts = read_model_line(line.strip())
        except CritiqueParseError as err:
            parts, review.failure = None, str(err)
        if parts is None:
            review.failure, review.done = review.failure or f"unrecognised critique line {line[:120]!r}", True
        elif not parts.correct:
            review.done = True

    def _finish(self, review: _Review) -> Critique:
        self.calls += 1
        self.generated_tokens += review.tokens
        try:
            if review.failure:
                raise CritiqueParseError(review.failure)
            critique = parse_model_text(review.text, review.steps)
        except CritiqueParseError as err:
            self.parse_failures += 1
            critique = Critique(abstained=True, extras={"unparsed": review.text, "error": str(err)})
        critique.extras["tokens"] = review.tokens
        if self.verdicts == "likelihood":
            critique.extras["accepted_by_likelihood"] = review.scored
            critique.extras["scored_tokens"] = review.scored_tokens
        return critique

    def _whole(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[Critique]:
        outputs = self.backend.generate([self.template.critique_prompt(p.question, s) for p, s in zip(problems, steps)],
                                        self.sampling)
        critiques = []
        for lines, out in zip(steps, outputs):
            text, tokens = self.template.decode(out[0].text), out[0].num_tokens
            self.calls += 1
            self.generated_tokens += tokens
            try:
                try:
                    critique = parse_whole_critique(text, len(lines))
                except CritiqueParseError:  # the paper's format, as instruct critics write it
                    critique = read_critique(text, len(lines), fit=True)
            except CritiqueParseError as err:
                self.parse_failures += 1
                critique = Critique(abstained=True, extras={"unparsed": text, "error": str(err)})
            critique.extras["tokens"] = tokens
            critiques.append(critique)
        return critiques


def _is_answer(line: str) -> bool:
    return is_answer_line(line)


def _result(computation: str) -> str:
    """The value after the last ``=`` (the whole text for an answer), whitespace removed."""
    return computation.rsplit("=", 1)[-1].replace(" ", "")
