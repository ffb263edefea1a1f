"""Final-answer extraction and equivalence.

Extraction is ordered from the most explicit marker to the least (``\\boxed{}``, GSM8K's ``####``,
``Answer:``, "the answer is"), so a solution that states its answer is never judged by a stray number.
Equivalence tries exact rational comparison for plain numbers first (fast, and immune to float rounding),
then math-verify (sympy) for everything symbolic, then a normalised string comparison for text answers.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "solution_lines",
    "split_solution",
    "until_answer",
    "ExtractedAnswer",
    "extract_answer",
    "last_boxed",
    "parse_number",
    "answers_equal",
    "normalize_latex",
    "is_answer_line",
]

_PLAIN_NUMBER_RE = re.compile(
    r"^\s*\$?\s*(?P<num>[-−]?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-−]?\.\d+)\s*(?P<unit>%|[A-Za-z][A-Za-z .'\-]*)?\s*\.?\s*$"
)
_ANY_NUMBER_RE = re.compile(r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_GSM8K_RE = re.compile(r"####\s*(?P<ans>[^\n]+)")
_ANSWER_LINE_RE = re.compile(r"(?:final\s+answer|answer)\s*(?:is)?\s*[:：]\s*(?P<ans>[^\n]+)", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s+is\s*[:：]?\s*(?P<ans>[^\n]+)", re.IGNORECASE)


@dataclass(frozen=True)
class ExtractedAnswer:
    """An answer found in model text, and which marker found it (for error analysis)."""

    text: str
    method: str  # boxed | gsm8k | answer_line | answer_is | last_number


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            ch = text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
        # unbalanced: try an earlier one
    m = re.search(r"\\boxed\s+([^\s$]+)", text)  # \boxed 5 (no braces)
    return m.group(1) if m else None


def _clean(candidate: str) -> str:
    s = candidate.strip()
    # answers stated in sentences: stop at the sentence end
    s = re.split(r"(?<=[^\d\\])\.\s|\.$", s, maxsplit=1)[0].strip() if not re.match(r"^\\", s) else s
    s = s.strip().rstrip(".").strip()
    inner = last_boxed(s)
    if inner is not None:
        s = inner
    if len(s) >= 2 and s.startswith("$") and s.endswith("$") and s.count("$") == 2:
        s = s[1:-1].strip()
    elif s.startswith("\\(") and s.endswith("\\)"):
        s = s[2:-2].strip()
    m = _PLAIN_NUMBER_RE.match(s)
    if m:
        return m.group("num").replace(" ", "").replace(",", "").replace("−", "-") + ("%" if m.group("unit") == "%" else "")
    return s


def extract_answer(text: str, allow_last_number: bool = True) -> ExtractedAnswer | None:
    """Find the final answer in a model response; ``None`` when nothing answer-like is present."""
    if not isinstance(text, str) or not text.strip():
        return None
    boxed = last_boxed(text)
    if boxed:
        return ExtractedAnswer(_clean(boxed), "boxed")
    for method, regex in (("gsm8k", _GSM8K_RE), ("answer_line", _ANSWER_LINE_RE), ("answer_is", _ANSWER_IS_RE)):
        matches = list(regex.finditer(text))
        if matches:
            cleaned = _clean(matches[-1].group("ans"))
            if cleaned:
                return ExtractedAnswer(cleaned, method)
    if allow_last_number:
        numbers = _ANY_NUMBER_RE.findall(text)
        if numbers:
            return ExtractedAnswer(numbers[-1].replace(",", "").replace("−", "-"), "last_number")
    return None


def parse_number(text: str) -> Fraction | None:
    """Exact value of a plain number (``1,234``, ``-3.50``, ``$7``, ``12%``, ``3/4``); ``None`` otherwise."""
    s = re.sub(r"\\[!,;: ]|\\\$|\$|\s", "", text.strip()).replace("−", "-")
    percent = s.endswith("%") or s.endswith("\\%")
    s = s.rstrip("%").removesuffix("\\")
    if re.fullmatch(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d{1,3})?|-?\.\d+", s):
        value = Fraction(s.replace(",", ""))
    elif m := re.fullmatch(r"(-?\d+)/(\d+)", s):
        if int(m.group(2)) == 0:
            return None
        value = Fraction(int(m.group(1)), int(m.group(2)))
    elif m := re.fullmatch(r"(-?)\\d?frac\{(-?\d+)\}\{(\d+)\}", s):
        if int(m.group(3)) == 0:
            return None
        value = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
    else:
        return None
    return value / 100 if percent else value


_LATEX_NOISE = [
    (r"\\left|\\right|\\!|\\,|\\;|\\:|\\ |~", ""),
    (r"\\dfrac|\\tfrac", r"\\frac"),
    (r"\^\{?\\circ\}?|°", ""),
    (r"\\text\{\s*([^{}]*?)\s*\}|\\textbf\{\s*([^{}]*?)\s*\}|\\mbox\{\s*([^{}]*?)\s*\}", r"\1\2\3"),
    (r"\\\$|\$", ""),
    (r"\s+", ""),
]


def normalize_latex(s: str) -> str:
    """A canonical string for last-resort comparison of text-like answers (``\\text{(C)}`` ~ ``(C)``)."""
    s = s.strip()
    for pattern, repl in _LATEX_NOISE:
        s = re.sub(pattern, repl, s)
    return s.rstrip(".").lower()


def _math_verify_equal(pred: str, gold: str) -> bool | None:
    """math-verify's verdict, or ``None`` when it could not parse either side.

    math-verify bounds its time with ``signal.alarm``, which only works on the main thread; elsewhere
    (threads, Ray actors with concurrency) the timeouts are switched off, as its documentation advises.
    """
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    except ImportError:  # pragma: no cover - math-verify is a hard dependency; keep numbers working without it
        return None
    on_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if on_main else None
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    try:
        gold_parsed = parse(_as_math(gold), extraction_config=configs, parsing_timeout=timeout)
        pred_parsed = parse(_as_math(pred), extraction_config=configs, parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return None
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify raises on pathological input; treat as "could not decide"
        return None


def _unbox(s: str) -> str:
    s = s.strip()
    inner = last_boxed(s) if s.startswith(("\\boxed", "\\fbox")) else None
    return inner if inner is not None else s


def _as_math(s: str) -> str:
    s = s.strip()
    if "$" in s or s.startswith("\\(") or s.startswith("\\["):
        return s
    return f"${s}$"


def answers_equal(pred: str | None, gold: str) -> bool:
    """Whether ``pred`` states the same mathematical answer as ``gold``."""
    if pred is None or not pred.strip():
        return False
    pred, gold = _unbox(pred), _unbox(gold)
    p_num, g_num = parse_number(pred), parse_number(gold)
    if p_num is not None and g_num is not None:
        return p_num == g_num
    verdict = _math_verify_equal(pred, gold)
    if verdict:
        return True
    return normalize_latex(pred) == normalize_latex(gold)



_ANSWER_LINE_START_RE = re.compile(r"^\s*(?:final\s+answer|answer)\s*[:：]|^\s*####|\\boxed\s*\{", re.IGNORECASE)


def is_answer_line(line: str) -> bool:
    """Whether a solution line states the final answer (``Answer: 36``, ``#### 36``, ``\\boxed{36}``)."""
    return bool(_ANSWER_LINE_START_RE.search(line))


def solution_lines(text: str) -> list[str]:
    """A solution's non-empty lines, stripped: the one way solution text becomes steps."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def until_answer(lines: list[str]) -> list[str]:
    """The lines up to and including the first answer line (what follows it is not part of the solution)."""
    for i, line in enumerate(lines):
        if is_answer_line(line):
            return lines[: i + 1]
    return lines


def split_solution(text: str) -> tuple[str, ...]:
    """Solution text -> its steps, stopping after the answer line."""
    return tuple(until_answer(solution_lines(text)))
