"""Final-answer extraction and equivalence.

:func:`extract_answer` reads the answer a line or short text states, from the most explicit marker to the least
(``\\boxed{}``, GSM8K's ``####``, ``Answer:`` / ``A:``, "the answer is"); the critics use it on answer lines.
:func:`answers_equal` compares two answers: exact rational comparison for plain numbers first (fast, and immune
to float rounding), then math-verify (sympy) for everything symbolic, then a normalised string comparison for
text answers. Free-form model text is verified by :func:`rewards.verifier.verify_response`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from math_verify import parse, verify

__all__ = [
    "solution_lines",
    "split_solution",
    "renumber_steps",
    "until_answer",
    "ExtractedAnswer",
    "extract_answer",
    "last_boxed",
    "parse_number",
    "answers_equal",
    "normalize_latex",
    "is_answer_line",
    "ANSWER_MARKERS",
    "last_number",
    "marker_text",
    "gold_readings",
    "math_verify_equal",
    "math_verify_parse",
]

MAX_NUMBER_CHARS = 400
_PLAIN_NUMBER_RE = re.compile(
    r"^\s*\$?\s*(?P<num>[-−]?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-−]?\.\d+)\s*(?P<unit>%|[A-Za-z][A-Za-z .'\-]*)?\s*\.?\s*$"
)
_ANY_NUMBER_RE = re.compile(r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
_STANDALONE_NUMBER_RE = re.compile(r"(?<![A-Za-z\d.,])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?![A-Za-z\d])")
GSM8K_RE = re.compile(r"####[ \t]*(?P<ans>[^\n]+)")
# ``Answer: 36``, ``Final answer: 36``, GSM8K's own ``A: 36`` (at a line start: "A:" inside a sentence is not one)
ANSWER_LINE_RE = re.compile(r"(?:final[ \t]+answer|answer)[ \t]*(?:is)?[ \t]*[:：][ \t]*(?P<ans>[^\n]+)"
                             r"|^[ \t]*A[ \t]*[:：][ \t]*(?P<a>[^\n]+)", re.IGNORECASE | re.MULTILINE)
ANSWER_IS_RE = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s+is\s*[:：]?\s*(?P<ans>[^\n]+)", re.IGNORECASE)
# the answer markers of the project's and GSM8K's formats, in extract_answer's order of preference
ANSWER_MARKERS = (("gsm8k", GSM8K_RE), ("answer_line", ANSWER_LINE_RE), ("answer_is", ANSWER_IS_RE))


def marker_text(m: re.Match) -> str:
    """The answer a marker match states (whichever alternative of its pattern matched)."""
    return next((g for g in m.groups() if g), "")


@dataclass(frozen=True)
class ExtractedAnswer:
    """An answer found in model text, and which marker found it (for error analysis)."""

    text: str
    method: str  # boxed | gsm8k | answer_line | answer_is | last_number


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) whose braces close, nested braces included.
    One pass over the text matches every brace, so unbalanced model output costs no more than balanced."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            closing[stack.pop()] = i
    for m in reversed(list(re.finditer(r"\\(?:boxed|fbox)[ \t]*\{", text))):
        end = closing.get(m.end() - 1)
        if end is not None:
            return text[m.end():end].strip()
    m = re.search(r"\\boxed[ \t]+([^\s$]+)", text)  # \boxed 5 (no braces)
    return m.group(1) if m else None


def clean_answer(candidate: str) -> str:
    """A marker's text as an answer: its first sentence, unboxed, a plain number normalised (``$1,234.50`` -> ``1234.50``)."""
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
        return ExtractedAnswer(clean_answer(boxed), "boxed")
    for method, regex in ANSWER_MARKERS:
        matches = list(regex.finditer(text))
        if matches:
            cleaned = clean_answer(marker_text(matches[-1]))
            if cleaned:
                return ExtractedAnswer(cleaned, method)
    if allow_last_number:
        number = last_number(text)
        if number is not None:
            return ExtractedAnswer(number, "last_number")
    return None


def last_number(text: str, standalone: bool = False) -> str | None:
    """The last number in ``text`` (commas dropped); ``standalone``: only one that is a token of its own, not
    part of a word (``AZYUK2A``) or of a longer number."""
    numbers = (_STANDALONE_NUMBER_RE if standalone else _ANY_NUMBER_RE).findall(text)
    return numbers[-1].replace(",", "").replace("−", "-") if numbers else None


def parse_number(text: str) -> Fraction | None:
    """Exact value of a plain number (``1,234``, ``-3.50``, ``$7``, ``12%``, ``3/4``); ``None`` otherwise."""
    if len(text) > MAX_NUMBER_CHARS:  # no answer is a 5,000-digit number (and int() refuses past 4,300 digits)
        return None
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


MAX_VERIFY_CHARS = 20_000  # math-verify reads at most the last this many characters of a response
MAX_VERIFY_CHARS_OFF_MAIN = 4_000  # ... and this many off the main thread, where nothing else bounds its time
MATH_VERIFY_SECONDS = 5  # math-verify's own default; pathological text is cut down before it gets there
_LONG_TOKEN_RE = re.compile(r"\S{1000,}")  # a thousand characters without a space is no answer, and sympy
# would take seconds to find that out


def _timeout() -> int | None:
    """math-verify bounds its time with ``signal.alarm``, which works on the main thread only; elsewhere
    (threads, Ray actors with concurrency) its timeouts are off, as its documentation advises, and the text it
    reads is capped instead (:data:`MAX_VERIFY_CHARS`)."""
    return MATH_VERIFY_SECONDS if _on_main() else None


def _on_main() -> bool:
    return threading.current_thread() is threading.main_thread()


def math_verify_parse(text: str) -> list:
    """math-verify's ``parse`` with its default extraction (LaTeX, then expressions; ``\\boxed`` and "final
    answer" first); ``[]`` when it finds nothing or fails."""
    try:
        text = _LONG_TOKEN_RE.sub(" ", text[-(MAX_VERIFY_CHARS if _on_main() else MAX_VERIFY_CHARS_OFF_MAIN):])
        return parse(text, parsing_timeout=_timeout())
    except Exception:  # math-verify raises on pathological input: nothing found
        return []


def gold_readings(gold: str) -> list[list]:
    """The ways a gold answer can be read. Gold written with delimiters (``$...$``, ``\\boxed``) is read as
    it is; bare LaTeX (``\\frac{14}{3}``, ``\\text{(C)}``) as math; plain text both as an expression and as
    math, since ``1,22`` is a decimal in one dataset and ``3, 5, 7`` a list in another."""
    text = gold.strip()
    if re.search(r"(?<!\\)\$|\\\(|\\\[|\\boxed", text):  # an escaped dollar sign is not math
        readings = [math_verify_parse(text)]
    elif re.search(r"[\\{}^_A-Za-z]", text):
        readings = [math_verify_parse(f"${text}$")]
    else:
        readings = [math_verify_parse(text), math_verify_parse(f"${text}$")]
    return [r for r in readings if r]


def math_verify_equal(gold: str, pred_parsed: list) -> bool:
    """math-verify's verdict on a parsed prediction against any reading of the gold answer."""
    for reading in gold_readings(gold):
        try:
            if verify(reading, pred_parsed, timeout_seconds=_timeout()):
                return True
        except Exception:  # math-verify raises on pathological input: not equal
            continue
    return False


def _math_verify_equal(pred: str, gold: str) -> bool | None:
    """math-verify's verdict on two answers, or ``None`` when it could not parse either side."""
    pred_parsed = math_verify_parse(_as_math(pred))
    if not pred_parsed or not gold_readings(_as_math(gold)):
        return None
    return math_verify_equal(_as_math(gold), pred_parsed)


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



_ANSWER_LINE_START = re.compile(r"^[ \t]*(?:final[ \t]+answer|answer|a)[ \t]*[:：]|^[ \t]*####|\\boxed[ \t]*\{"
                                   r"|^[ \t]*(?:so[ \t,]+)?(?:the[ \t]+)?(?:final[ \t]+)?answer[ \t]+is\b", re.IGNORECASE)


def is_answer_line(line: str) -> bool:
    """Whether a solution line states the final answer (``Answer: 36``, GSM8K's ``#### 36`` and ``A: 36``,
    "The answer is 36.", ``\\boxed{36}``)."""
    return bool(_ANSWER_LINE_START.search(line))


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


_STEP_LABEL = re.compile(r"(\s*step[ \t]+)\d+([ \t]*:)", re.IGNORECASE)


def renumber_steps(steps: Sequence[str]) -> list[str]:
    """The lines that open with a step label (``Step k:``) labelled 1, 2, ... in their order, the rest as they are:
    a model's verified solution as training text with the labels a reference would have (a model that never wrote
    ``Step 5`` labels its fifth step ``Step 4``, and training on that keeps the habit)."""
    out, index = [], 0
    for line in steps:
        if m := _STEP_LABEL.match(line):
            index += 1
            line = f"{m.group(1)}{index}{m.group(2)}{line[m.end():]}"
        out.append(line)
    return out
