"""The reference-aware oracle critic: the upper-bound critic and the annotator of synthetic critique data.

It judges each step the way a careful annotator holding the reference solution would:

1. a stated computation whose arithmetic is wrong (sympy) is an error: "4*7 is 28, not 27";
2. a computation that is one of the reference's computations (same operation on the same values, in any
   order of steps) is right;
3. one that shares the operation and one operand with an unused reference computation but not the other
   operand misread a number; one with the same operands but another operation used the wrong operation;
4. any other computation whose result is a value the reference reaches is a different but valid route;
5. anything else does not follow from the problem.

Rules 3-5 locate the error of a solution that went wrong. In a solution finished with the right final answer,
a step with right arithmetic whose every operand follows -- a number of the problem (digits or words), a
number or result an earlier step states, or a unit constant (60 minutes, 100 percent, 12 months...) -- is accepted as
another route before rules 3-5 run: real solutions need not mirror the reference, and matching it would call
a right solution wrong.

Steps without any computation are not judged wrong. The answer line is judged by the verifier.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from core.critique import Critique, StepJudgement
from core.problem import Problem
from critics.base import BaseCritic
from rewards.answer import answers_equal, extract_answer, is_answer_line
from rewards.steps import Computation, find_computations, format_number
from rewards.verifier import verify_response

__all__ = ["OracleCritic"]

_COMMUTATIVE = {"+", "*"}


@dataclass
class _RefComputation:
    comp: Computation
    used: bool = False

    def signature(self) -> tuple | None:
        return _signature(self.comp)


def _signature(comp: Computation) -> tuple | None:
    binary = comp.binary
    if binary is None:
        return None
    a, op, b = binary
    return (op, tuple(sorted((a, b)))) if op in _COMMUTATIVE else (op, (a, b))


def _computation(comp: Computation) -> str:
    return f"{comp.expression}={format_number(comp.stated)}"



class OracleCritic(BaseCritic):
    """Finds the first wrong step using the sympy step checker and the problem's reference solution."""

    name = "oracle"

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique:
        refs = [_RefComputation(c) for line in (problem.steps or ()) if not is_answer_line(line)
                for c in find_computations(line)]
        finished_right = bool(steps) and is_answer_line(steps[-1]) and self._answer_right(steps[-1], problem)
        known = set(problem_numbers(problem.question))  # grows by each step's results
        judgements: list[StepJudgement] = []
        first_error: int | None = None
        hint = ""
        for index, line in enumerate(steps, start=1):
            if is_answer_line(line):
                judgements.append(self._judge_answer(index, line, problem, steps, first_error))
                if first_error is None and not judgements[-1].correct:
                    first_error = index
                continue
            correct, check, feedback, step_hint = self._judge_step(index, line, refs, first_error, finished_right, known)
            judgements.append(StepJudgement(index, correct, check, feedback))
            known |= {c.stated for c in find_computations(line)} | problem_numbers(line)  # what it has stated
            if not correct and first_error is None:
                first_error, hint = index, step_hint
        return Critique(tuple(judgements), hint=hint)

    @staticmethod
    def _answer_right(line: str, problem: Problem) -> bool:
        return verify_response(line, problem.answer).correct

    def _judge_answer(self, index: int, line: str, problem: Problem, steps: Sequence[str],
                      first_error: int | None) -> StepJudgement:
        if self._answer_right(line, problem):
            return StepJudgement(index, True, is_answer=True)
        found = extract_answer(line, allow_last_number=True)
        if found is None:
            feedback = "The answer line states no answer."
        elif first_error is not None:
            feedback = f"The final answer {found.text} is wrong because of the error in step {first_error}."
        else:
            last_value = self._last_result(steps[: index - 1])
            if last_value is not None and not answers_equal(found.text, format_number(last_value)):
                feedback = (f"The final answer {found.text} does not match the result of the last step "
                            f"({format_number(last_value)}).")
            else:
                feedback = f"The final answer {found.text} is wrong: the solution stops before the problem is solved."
        return StepJudgement(index, False, feedback=feedback, is_answer=True)

    @staticmethod
    def _last_result(lines: Sequence[str]) -> Fraction | None:
        for line in reversed(lines):
            comps = find_computations(line)
            if comps:
                return comps[-1].stated
        return None

    def _judge_step(self, index: int, line: str, refs: list[_RefComputation], first_error: int | None,
                    finished_right: bool, known: set[Fraction]) -> tuple[bool, str, str, str]:
        """``(correct, check, feedback, hint)`` for one non-answer line."""
        comps = find_computations(line)
        if not comps:
            return True, "", "", ""
        checks = []
        for comp in comps:
            value = comp.value if comp.value is not None else comp.stated
            checks.append(f"{comp.expression}={format_number(value)}")
        check = ", ".join(checks)
        for comp in comps:
            if not comp.ok:
                return (False, check, f"Step {index} is wrong: {comp.describe_error()}; the rest builds on it.",
                        f"Recompute step {index}: {comp.expression}={format_number(comp.value)}.")
        if first_error is not None:
            # arithmetic is right but it stands on a wrong value; a later match would be a coincidence
            if all(self._consume_exact(comp, refs) for comp in comps):
                return True, check, "", ""
            return False, check, f"Step {index} builds on the error in step {first_error}.", ""
        for comp in comps:
            # another route is accepted when it reached the right answer from what it was given
            verdict = self._match(comp, refs, index, finished_right and all(x in known for x in comp.operands))
            if verdict is not None:  # the check becomes what the step should have computed
                feedback, hint, expected = verdict
                return False, expected or check, feedback, hint
        return True, check, "", ""

    @staticmethod
    def _consume_exact(comp: Computation, refs: list[_RefComputation]) -> bool:
        sig = _signature(comp)
        for ref in refs:
            if not ref.used and sig is not None and ref.signature() == sig:
                ref.used = True
                return True
        return False

    def _match(self, comp: Computation, refs: list[_RefComputation], index: int,
               finished_right: bool) -> tuple[str, str, str] | None:
        """``None`` when ``comp`` agrees with the reference, else ``(feedback, hint, expected computation)``."""
        if self._consume_exact(comp, refs):
            return None
        if finished_right:  # right arithmetic in a solution that reached the right answer: another route
            return None
        sig = _signature(comp)
        unused = [r for r in refs if not r.used]
        if sig is not None:
            op, operands = sig
            for ref in unused:
                ref_sig = ref.signature()
                if ref_sig is None:
                    continue
                ref_op, ref_operands = ref_sig
                if ref_op == op and op in _COMMUTATIVE:
                    extra, missing = Counter(operands) - Counter(ref_operands), Counter(ref_operands) - Counter(operands)
                    if len(extra) == len(missing) == 1:
                        return self._misread(index, next(iter(extra)), next(iter(missing)), ref)
                if ref_op == op and op not in _COMMUTATIVE and (operands[0] == ref_operands[0]) != (
                        operands[1] == ref_operands[1]):
                    pos = 0 if operands[0] != ref_operands[0] else 1
                    return self._misread(index, operands[pos], ref_operands[pos], ref)
                if ref_op != op and sorted(operands) == sorted(ref_operands):
                    ref.used = True
                    expected = _computation(ref.comp)
                    return (f"Step {index} is wrong: it should compute {ref.comp.expression}, not "
                            f"{comp.expression}; the rest builds on it.", f"Step {index} should be {expected}.", expected)
        for ref in unused:
            if ref.comp.stated == comp.stated:
                ref.used = True
                return None
        expected = _computation(unused[0].comp) if unused else ""
        hint = f"Step {index} should be {expected}." if expected else ""
        return (f"Step {index} is wrong: {comp.expression}={format_number(comp.stated)} does not follow from the "
                f"problem; the rest builds on it.", hint, expected)

    @staticmethod
    def _misread(index: int, wrong: Fraction, right: Fraction, ref: _RefComputation) -> tuple[str, str, str]:
        ref.used = True
        expected = _computation(ref.comp)
        return (f"Step {index} is wrong: it uses {format_number(wrong)} where it should use {format_number(right)}; "
                f"the rest builds on it.", f"Step {index} should be {expected}.", expected)


_WORDS = {"half": Fraction(1, 2), "once": 1, "twice": 2, "double": 2, "triple": 3, "thrice": 3, "quarter": Fraction(1, 4),
          "dozen": 12, "score": 20, "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
          "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
          "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
          "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000}
# constants a solution may bring in without the problem stating them: units, percent, halves and quarters
_CONSTANTS = {Fraction(n) for n in (1, 2, 3, 4, 7, 10, 12, 24, 30, 52, 60, 100, 365, 1000)} | {Fraction(1, 2), Fraction(1, 4)}


@lru_cache(maxsize=65536)
def problem_numbers(question: str) -> frozenset[Fraction]:
    """Every number a problem gives (digits, percentages as fractions too, number words) and the unit constants
    (memoised: every critique of a problem reads its question again)."""
    numbers = set(_CONSTANTS)
    for m in re.finditer(r"\d+(?:,\d{3})*(?:\.\d+)?", question):
        value = Fraction(m.group().replace(",", ""))
        numbers |= {value, value / 100}
    for word in re.findall(r"[a-z]+", question.lower()):
        if word in _WORDS:
            numbers.add(Fraction(_WORDS[word]))
    return frozenset(numbers)
