"""Step-level arithmetic checking with sympy.

A solution step states computations in one of two ways: inline (``4*7=28``, ``4 × 7 = 28``, ``$10 x 2 = $20``)
or as GSM8K calculator notes (``<<4*7=28>>``). When a step carries calculator notes, only those are read:
GSM8K writes each computation twice (``4 * 7 = <<4*7=28>>28``) and the note is the unambiguous copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache

import sympy

__all__ = ["Computation", "StepCheck", "find_computations", "check_step", "format_number"]

_CALC_NOTE_RE = re.compile(r"<<([^<>]*?)=([^<>=]*?)>>")
# a times sign between numbers ("10 x 2", "4x5", "3 × $4"), never a variable ("3x + 20")
_TIMES_RE = re.compile(r"(?<=[\d)\s])[x×X✕∙·⋅](?=\s*[\d($])")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_STATED_RE = re.compile(r"^\s*\$?\s*(-?\s*\d+(?:\.\d+|/\d+(?![\d.]))?)(?!\.?\d|\s*[\d(*/^]|[A-Za-z]|\s*[-+*/]\s*[\w(])\s*(%?)")
_LHS_CHARS = set("0123456789.+-*/()%^ $")
_BINARY_RE = re.compile(r"^\(?(-?\d+(?:\.\d+)?)\)?([+\-*/])\(?(-?\d+(?:\.\d+)?)\)?$")
# "1 1/2" is one and a half; in "12 1 1/2" the numbers are a list, not a mixed number after a 12
_MIXED_NUMBER_RE = re.compile(r"(?<![\d.])(?<![\d.]\s)(\d+)\s+(\d+)/(\d+)")
_MAX_EXPR_CHARS = 200
FLOAT_REPR_DECIMALS = 6  # more decimals than this are a float's repr: compared to one part in a billion


def format_number(value: Fraction) -> str:
    """Write an exact value the way a solution would: ``28``, ``-3``, ``2.5``, else ``7/3``."""
    if value.denominator == 1:
        return str(value.numerator)
    for digits in range(1, 21):  # an exact decimal is written as one, however many places it has
        scaled = value * 10**digits
        if scaled.denominator == 1:
            sign, whole = "-" if scaled < 0 else "", str(abs(scaled.numerator)).rjust(digits + 1, "0")
            return f"{sign}{whole[:-digits]}.{whole[-digits:]}"
    return f"{value.numerator}/{value.denominator}"


@dataclass(frozen=True)
class Computation:
    """One stated computation: ``expression = stated``, with the true value sympy gives."""

    expression: str
    stated: Fraction
    value: Fraction | None
    source: str  # "calculator" | "inline"
    stated_decimals: int = 0

    @property
    def ok(self) -> bool:
        """Right, allowing the rounding a written decimal implies (``10/3=3.33``); integers must be exact."""
        if self.value is None:
            return True  # nothing we can check
        if self.stated_decimals == 0:
            return self.value == self.stated
        if self.stated_decimals > FLOAT_REPR_DECIMALS:  # a calculator's float ("99.00000000000001"), not a rounding
            return abs(self.value - self.stated) <= Fraction(1, 10**9) * max(1, abs(self.value))
        return abs(self.value - self.stated) < Fraction(1, 10**self.stated_decimals)

    @cached_property
    def binary(self) -> tuple[Fraction, str, Fraction] | None:
        """``(a, op, b)`` when the expression is a single binary operation, else ``None`` (kept: critics ask
        often, and memoised computations are shared)."""
        m = _BINARY_RE.match(self.expression.replace(" ", ""))
        if not m:
            return None
        return Fraction(m.group(1)), m.group(2), Fraction(m.group(3))

    @property
    def operands(self) -> tuple[Fraction, ...]:
        return tuple(Fraction(n) for n in re.findall(r"\d+(?:\.\d+)?", self.expression))

    def describe_error(self) -> str:
        """``4*7 is 28, not 27``: the sentence an annotator writes for a wrong computation."""
        if self.value is None:
            return f"{self.expression} could not be evaluated"
        return f"{self.expression} is {format_number(self.value)}, not {format_number(self.stated)}"


@dataclass(frozen=True)
class StepCheck:
    """All computations found in one step and which of them are wrong."""

    text: str
    computations: tuple[Computation, ...]

    @property
    def errors(self) -> tuple[Computation, ...]:
        return tuple(c for c in self.computations if not c.ok)

    @property
    def ok(self) -> bool:
        return not self.errors


def _normalise(text: str) -> str:
    text = text.replace("−", "-").replace("–", "-").replace("÷", "/").replace("\\times", "*").replace("\\cdot", "*")
    text = _THOUSANDS_RE.sub("", text)
    return _TIMES_RE.sub("*", text)


_SIMPLE_BINARY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([+\-*/])\s*(\d+(?:\.\d+)?)\s*$")


def _evaluate(expression: str) -> Fraction | None:
    """Exact value of an arithmetic expression, or ``None`` if it is not one.

    One operation on two plain numbers (most steps) is done with exact fractions; everything else goes to sympy.
    """
    if m := _SIMPLE_BINARY_RE.match(expression):
        a, op, b = Fraction(m.group(1)), m.group(2), Fraction(m.group(3))
        if op == "/":
            return a / b if b != 0 else None
        return a + b if op == "+" else a - b if op == "-" else a * b
    expr = expression.replace("$", "").replace("^", "**").strip()
    expr = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", expr)
    expr = _MIXED_NUMBER_RE.sub(r"(\1+\2/\3)", expr)  # "1 1/2" is one and a half
    if not expr or len(expr) > _MAX_EXPR_CHARS or not re.search(r"\d", expr):
        return None
    if expr.count("**") > 1 or re.search(r"\*\*\s*\(?\s*-?\d{3,}", expr):  # refuse huge powers (9^9^9)
        return None
    try:
        value = sympy.sympify(expr, rational=True)
    except (sympy.SympifyError, SyntaxError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        return None
    if not isinstance(value, sympy.Rational):  # zoo, nan, irrational powers
        return None
    return Fraction(int(value.p), int(value.q))


def _parse_stated(text: str) -> tuple[Fraction, int] | None:
    m = _STATED_RE.match(text)
    if not m:
        return None
    number = m.group(1).replace(" ", "")
    if re.search(r"/0+$", number):
        return None
    decimals = len(number.split(".")[1]) if "." in number else 0
    if m.group(2):  # "= 40%" states 0.4
        return Fraction(number) / 100, decimals + 2
    return Fraction(number), decimals


def _has_operator(expr: str) -> bool:
    return bool(re.search(r"\d\s*\)?\s*[+\-*/^%]\s*\(?\s*[\d.(]", expr)) or "%" in expr


def _inline_computations(text: str) -> list[Computation]:
    found = []
    for eq in (m.start() for m in re.finditer("=", text)):
        if eq + 1 < len(text) and text[eq + 1] == "=":
            continue
        start = eq
        while start > 0 and text[start - 1] in _LHS_CHARS:
            start -= 1
        lhs = text[start:eq].strip()
        before = text[:start].rstrip()
        if lhs[:1] in "+-*/^)" and before[-1:].isalnum():
            continue  # algebra with a variable ("X + X*80% = 36"), not arithmetic
        stated = _parse_stated(text[eq + 1 :])
        if not lhs or stated is None:
            continue
        tokens = lhs.split()
        value = None
        while tokens:  # drop leading words/numbers that are not part of the expression ("in 2 3+4=7")
            candidate = " ".join(tokens).lstrip("+*/^) ")
            if candidate.count("(") > candidate.count(")"):
                candidate = candidate.lstrip("(")
            if _has_operator(candidate):
                value = _evaluate(candidate)
                if value is not None:
                    lhs = candidate
                    break
            tokens = tokens[1:]
        if value is None:
            continue
        found.append(Computation(lhs.replace(" ", "").replace("$", ""), stated[0], value, "inline", stated[1]))
    return found


@lru_cache(maxsize=65536)
def _find_computations_cached(step: str) -> tuple[Computation, ...]:
    return tuple(_find_computations(step))


def find_computations(step: str) -> list[Computation]:
    """Every computation a step states, in order (memoised: critics see the same reference steps often)."""
    return list(_find_computations_cached(step))


def _find_computations(step: str) -> list[Computation]:
    text = _normalise(step)
    notes = _CALC_NOTE_RE.findall(text)
    if notes:
        out = []
        for lhs, rhs in notes:
            stated = _parse_stated(rhs)
            if stated is None:
                continue
            out.append(Computation(lhs.replace(" ", ""), stated[0], _evaluate(lhs), "calculator", stated[1]))
        return out
    return _inline_computations(text)


def check_step(step: str) -> StepCheck:
    """Find the computations in ``step`` and check each with sympy."""
    return StepCheck(step, tuple(find_computations(step)))
