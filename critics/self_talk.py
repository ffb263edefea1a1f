"""The self-talk format: one output in which every step is followed by the model's own check of it, a step it
flags by its correction, and the answer last -- the paper's one model that reasons, critiques and refines.

Text form (numbers as the model writes them; the tiny world's codec applies to each line like any other)::

    Step 1: 29+22=51
    Check: 29+22=51 correct
    Step 2: 51*3=160
    Check: 51*3=153 wrong
    Fix: Step 2: 51*3=153
    Step 3: 153+24=177
    Check: 153+24=177 correct
    Answer: 177

A ``Check:`` line checks the step (or fix) just above it: the model's own recomputation, then ``correct`` or
``wrong``. A ``Fix:`` line follows a ``wrong`` check and replaces the step it flagged. The solution a transcript
stands for is its steps with the fixes applied, up to the answer line. :func:`render` writes the form and
:func:`parse` reads it back; parse never raises on model text: what is malformed (truncated, a check with no
step, a fix with no flag, over-long) is listed in :attr:`SelfTalk.problems`, and the rest is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from core.critique import Critique, StepJudgement
from rewards.answer import is_answer_line, solution_lines

__all__ = ["MAX_SELF_TALK_CHARS", "SelfTalk", "Turn", "correct_transcript", "corrected_transcript", "parse",
           "render"]

MAX_SELF_TALK_CHARS = 20_000  # a transcript longer than this is read up to here (and said so)
_CHECK_RE = re.compile(r"check[ \t]*:", re.IGNORECASE)
_FIX_RE = re.compile(r"fix[ \t]*:", re.IGNORECASE)
_VERDICT_RE = re.compile(r"(?:^|[ \t])(correct|wrong)[ \t.]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Turn:
    """One step of a transcript: as written, the model's check of it, and the fix of a step it flagged."""

    step: str
    check: str | None = None      # the recomputation on the check line ("" when the line has only a verdict)
    correct: bool | None = None   # the check's verdict (None: not checked)
    fix: str | None = None        # the corrected step (only after a wrong verdict)
    fix_check: str | None = None  # a check of the fix, if the model wrote one
    fix_correct: bool | None = None

    @property
    def final(self) -> str:
        """The step as it stands in the solution."""
        return self.fix if self.fix is not None else self.step


@dataclass(frozen=True)
class SelfTalk:
    turns: tuple[Turn, ...] = ()
    answer: str | None = None     # the answer line (None: the transcript never got there)
    problems: tuple[str, ...] = field(default=())

    @property
    def steps(self) -> list[str]:
        """The solution the transcript stands for: the steps with their fixes, then the answer line."""
        return [t.final for t in self.turns] + ([self.answer] if self.answer is not None else [])

    @property
    def written(self) -> list[str]:
        """The steps as first written (before any fix), then the answer line."""
        return [t.step for t in self.turns] + ([self.answer] if self.answer is not None else [])

    @property
    def corrections(self) -> int:
        return sum(t.fix is not None for t in self.turns)

    @property
    def well_formed(self) -> bool:
        return not self.problems

    def critique(self) -> Critique:
        """The model's own checks as a critique of the steps as first written (unchecked steps count as accepted),
        so an episode record holds them like any critic's."""
        judged = [StepJudgement(i, t.correct is not False, t.check or "") for i, t in enumerate(self.turns, start=1)]
        return Critique(tuple(judged), extras={"self_talk": True, "corrections": self.corrections})


def render(turns: Sequence[Turn], answer: str) -> list[str]:
    """A transcript's lines (one string each), the answer line last."""
    lines: list[str] = []
    for t in turns:
        lines.append(t.step)
        if t.correct is not None:
            lines.append(_check_line(t.check, t.correct))
        if t.fix is not None:
            if t.correct is not False:
                raise ValueError(f"a fix needs a wrong check before it (step {t.step!r})")
            lines.append(f"Fix: {t.fix}")
            if t.fix_correct is not None:
                lines.append(_check_line(t.fix_check, t.fix_correct))
    return lines + [answer]


def parse(text: str) -> SelfTalk:
    """Read a transcript back, linear in its length; malformed parts are listed in ``problems``, never raised."""
    problems: list[str] = []
    if not isinstance(text, str):
        return SelfTalk(problems=(f"not text: {type(text).__name__}",))
    if len(text) > MAX_SELF_TALK_CHARS:
        problems.append(f"over-long: {len(text):,} characters, read the first {MAX_SELF_TALK_CHARS:,}")
        text = text[:MAX_SELF_TALK_CHARS]
    turns: list[Turn] = []
    answer = None
    for n, line in enumerate(solution_lines(text), start=1):
        if m := _CHECK_RE.match(line):
            verdict = _VERDICT_RE.search(line, m.end())
            if verdict is None:
                problems.append(f"line {n}: a check without a verdict (correct / wrong): {line[:80]!r}")
                continue
            check, correct = line[m.end(): verdict.start()].strip(), verdict.group(1).lower() == "correct"
            last = turns[-1] if turns else None
            if last is not None and last.correct is None:
                turns[-1] = replace(last, check=check, correct=correct)
            elif last is not None and last.fix is not None and last.fix_correct is None:
                turns[-1] = replace(last, fix_check=check, fix_correct=correct)
            else:
                problems.append(f"line {n}: a check with no step before it: {line[:80]!r}")
        elif m := _FIX_RE.match(line):
            last = turns[-1] if turns else None
            if last is None or last.correct is not False or last.fix is not None:
                problems.append(f"line {n}: a fix with no wrong check before it: {line[:80]!r}")
                continue
            turns[-1] = replace(last, fix=line[m.end():].strip())
        elif is_answer_line(line):
            answer = line
            break
        else:
            turns.append(Turn(line))
    if answer is None:
        problems.append("truncated: no answer line")
    return SelfTalk(tuple(turns), answer, tuple(problems))


def correct_transcript(steps: Sequence[str], critique: Critique | None = None) -> list[str]:
    """A right solution as a transcript whose every check passes (the recomputations from ``critique``, a
    reference-aware critique of it, when given)."""
    body, answer = _split(steps)
    checks = _checks(critique, len(body))
    return render([Turn(s, checks[i], True) for i, s in enumerate(body)], answer)


def corrected_transcript(flawed: Sequence[str], critique: Critique, corrected: Sequence[str],
                         corrected_critique: Critique | None = None) -> list[str]:
    """A flawed solution caught and fixed: its steps up to the critique's first error, each checked, the flagged
    step with the critique's recomputation and a wrong verdict, the corrected step as its fix, then the
    corrected solution's remaining steps with passing checks (from ``corrected_critique`` when given).

    ``corrected`` must agree with ``flawed`` before the error (a refinement cut at the flagged step does)."""
    first = critique.first_error_step
    flawed_body, _ = _split(flawed)
    body, answer = _split(corrected)
    if first is None or first > len(flawed_body) or first > len(body):
        raise ValueError(f"the critique flags no step of the solution (first error: {first})")
    if list(flawed_body[: first - 1]) != list(body[: first - 1]):
        raise ValueError("the corrected solution differs from the flawed one before the flagged step")
    before = _checks(critique, first)
    after = _checks(corrected_critique, len(body))
    turns = [Turn(s, before[i], True) for i, s in enumerate(body[: first - 1])]
    turns.append(Turn(flawed_body[first - 1], before[first - 1], False, body[first - 1]))
    turns += [Turn(s, after[i], True) for i, s in enumerate(body[first:], start=first)]
    return render(turns, answer)


def _check_line(check: str | None, correct: bool) -> str:
    return f"Check: {check + ' ' if check else ''}{'correct' if correct else 'wrong'}"


def _split(steps: Sequence[str]) -> tuple[list[str], str]:
    steps = list(steps)
    if not steps or not is_answer_line(steps[-1]):
        raise ValueError(f"a solution for a transcript ends with its answer line, got {steps[-1:]!r}")
    return steps[:-1], steps[-1]


def _checks(critique: Critique | None, n: int) -> list[str]:
    """The recomputation a critique wrote for each of the first ``n`` steps ("" where it wrote none)."""
    by_index = {j.index: j.check for j in (critique.steps if critique else ()) if not j.is_answer}
    return [by_index.get(i, "") for i in range(1, n + 1)]
