"""Procedural multi-step arithmetic word problems: the embedded world every default run trains and tests on.

A problem is a short, terse story about one person's collection ("Ann has 12 apples. She buys 3 bags of 4. She
gives away 5. How many apples does Ann have now?") generated from a small program of binary operations. Its
difficulty is the number of steps (one operation per step), and the number range is the second knob. The
reference solution writes one step per line in the project's step format, ``Step 2: 12+12=24``, and ends with
``Answer: 24``.

Train and test splits are disjoint by construction: each problem is assigned to a split by a hash of its text,
so no seed can put the same question in both.

``distractors=k`` adds up to ``k`` sentences about someone else ("Ben buys 4 coins.") at random places in the
story: the solution does not change, but the question grows, so a warm-up on few steps can still learn to read
questions as long as the hard levels' (and an evaluation can test what irrelevant numbers do, as GSM-IC does).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from core.problem import Problem, answer_line
from rewards.steps import format_number

__all__ = [
    "SyntheticArithmetic",
    "StepOp",
    "run_program",
    "render_steps",
    "corrupt_solution",
    "CorruptedSolution",
    "ERROR_KINDS",
    "ALL_ERROR_KINDS",
    "step_line",
]

NAMES = [("Ann", "she"), ("Ben", "he"), ("Cara", "she"), ("Dan", "he"), ("Eva", "she"),
         ("Finn", "he"), ("Gina", "she"), ("Hal", "he"), ("Ivy", "she"), ("Jack", "he")]
ITEMS = ["apples", "marbles", "stickers", "coins", "books", "pencils", "cards", "shells", "cookies", "stamps"]
CONTAINERS = ["bags", "boxes", "packs", "jars"]
OPS = "+-*/"
ERROR_KINDS = ("calculation", "operand", "operation")  # the kinds the actor's refine examples use
ALL_ERROR_KINDS = (*ERROR_KINDS, "skipped")  # plus a dropped step, for critique data
TEST_SHARE = 5  # one problem in five (by text hash) belongs to the test split


@dataclass(frozen=True)
class StepOp:
    """One solution step: ``a op b``; an operand is a literal from the story or (``ref``) an earlier step."""

    a: int
    op: str
    b: int
    a_ref: bool = False  # a is the result of step number ``a`` (1-based)
    b_ref: bool = False

    def to_list(self) -> list:
        return [self.a, self.op, self.b, self.a_ref, self.b_ref]


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ZeroDivisionError("division by zero in a synthetic program")
    return a / b


def run_program(program: list[StepOp]) -> list[tuple[Fraction, Fraction, Fraction]]:
    """``(a, b, result)`` for each step, with references resolved to earlier results."""
    results: list[Fraction] = []
    out = []
    for step in program:
        a = results[step.a - 1] if step.a_ref else Fraction(step.a)
        b = results[step.b - 1] if step.b_ref else Fraction(step.b)
        r = _apply(a, step.op, b)
        results.append(r)
        out.append((a, b, r))
    return out


def step_line(index: int, a: Fraction, op: str, b: Fraction, result: Fraction) -> str:
    """One line in the project's step format: ``Step 3: 51-15=36``."""
    return f"Step {index}: {format_number(a)}{op}{format_number(b)}={format_number(result)}"


def render_steps(program: list[StepOp]) -> tuple[list[str], Fraction]:
    values = run_program(program)
    lines = [step_line(i + 1, a, op.op, b, r) for i, ((a, b, r), op) in enumerate(zip(values, program))]
    return lines, values[-1][2]


class _Story:
    """Builds a program and its story together so the text and the arithmetic cannot drift apart."""

    def __init__(self, rng: random.Random, max_operand: int, max_value: int):
        self.rng, self.max_operand, self.max_value = rng, max_operand, max_value
        self.name, self.pronoun = rng.choice(NAMES)
        self.items = rng.choice(ITEMS)
        self.program: list[StepOp] = []
        self.sentences: list[str] = []
        self.value = rng.randint(2, max_operand)
        self.current: tuple[int, bool] = (self.value, False)  # operand for "what they have now"
        self.sentences.append(f"{self.name} has {self.value} {self.items}.")

    def _push(self, op: str, b: int, b_ref: bool = False) -> int:
        a, a_ref = self.current
        self.program.append(StepOp(a, op, b, a_ref, b_ref))
        self.current = (len(self.program), True)
        return len(self.program)

    def _push_groups(self, k: int, m: int, op: str) -> None:
        """Two steps: ``k*m``, then the running total ``op`` that product."""
        saved = self.current
        self.current = (k, False)
        product = self._push("*", m)
        self.current = saved
        self._push(op, product, b_ref=True)
        self.value = self.value + k * m if op == "+" else self.value - k * m

    def event(self, steps_left: int) -> bool:
        """Add one event using at most ``steps_left`` steps; False if none fits the number range."""
        rng, x, P = self.rng, self.value, self.pronoun.capitalize()
        choices = ["gain", "lose", "times", "share"] + (["buy_groups", "give_groups"] if steps_left >= 2 else [])
        rng.shuffle(choices)
        for kind in choices:
            if kind == "gain" and x + 1 <= self.max_value:
                b = rng.randint(1, min(self.max_operand, self.max_value - x))
                verb = rng.choice([f"{P} buys {b} more.", f"{P} finds {b} more.", f"{P} gets {b} more."])
                self._push("+", b)
                self.value = x + b
            elif kind == "lose" and x >= 2:
                b = rng.randint(1, min(self.max_operand, x - 1))
                verb = rng.choice([f"{P} gives away {b}.", f"{P} loses {b}.", f"{P} sells {b}."])
                self._push("-", b)
                self.value = x - b
            elif kind == "times" and 1 <= x and 2 * x <= self.max_value:
                k = rng.randint(2, min(5, self.max_value // x))
                verb = f"{P} ends up with {k} times as many."
                self._push("*", k)
                self.value = x * k
            elif kind == "share" and any(x % k == 0 for k in range(2, 6)) and x >= 4:
                k = rng.choice([k for k in range(2, 6) if x % k == 0 and x // k >= 1])
                verb = f"{P} splits them into {k} equal piles and keeps one."
                self._push("/", k)
                self.value = x // k
            elif kind == "buy_groups":
                room = self.max_value - x
                if room < 4:
                    continue
                k = rng.randint(2, min(5, room // 2))
                m = rng.randint(2, max(2, min(self.max_operand, room // k)))
                box = rng.choice(CONTAINERS)
                verb = f"{P} buys {k} {box} of {m}."
                self._push_groups(k, m, "+")
            elif kind == "give_groups":
                if x < 4:
                    continue
                k = rng.randint(2, min(5, x // 2))
                m = rng.randint(1, max(1, min(self.max_operand, x // k)))
                if k * m >= x:
                    continue
                verb = f"{P} gives {k} friends {m} each."
                self._push_groups(k, m, "-")
            else:
                continue
            self.sentences.append(verb)
            return True
        return False

    def question(self, sentences: list[str] | None = None) -> str:
        return " ".join(sentences or self.sentences) + f" How many {self.items} does {self.name} have now?"

    def with_distractors(self, rng: random.Random, count: int) -> list[str]:
        """The story's sentences with ``count`` sentences about people of the other gender (so no pronoun of the
        story can mean them) and other items inserted at random places; the story's own order is kept."""
        others = [name for name, pronoun in NAMES if pronoun != self.pronoun]
        people = rng.sample(others, 2)
        items = rng.choice([item for item in ITEMS if item != self.items])
        sentences = list(self.sentences)
        for _ in range(count):
            who, n = rng.choice(people), rng.randint(1, self.max_operand)
            sentence = rng.choice([f"{who} has {n} {items}.", f"{who} buys {n} {items}.",
                                   f"{who} gives away {n} {items}.",
                                   f"{who} buys {rng.randint(2, 5)} {rng.choice(CONTAINERS)} of {n} {items}."])
            sentences.insert(rng.randint(0, len(sentences)), sentence)
        return sentences


def _split_of(question: str) -> str:
    digest = int(hashlib.sha256(question.encode()).hexdigest()[:12], 16)
    return "test" if digest % TEST_SHARE == 0 else "train"


class SyntheticArithmetic:
    """Seeded multi-step arithmetic word problems; problem ``i`` has ``min_steps + i % n_levels`` steps."""

    def __init__(
        self,
        size: int = 1000,
        min_steps: int = 1,
        max_steps: int = 8,
        max_operand: int = 30,
        max_value: int = 499,
        split: str = "train",
        seed: int = 0,
        distractors: int = 0,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if not 1 <= min_steps <= max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}..{max_steps}")
        if max_operand < 2 or max_value < 2 * max_operand:
            raise ValueError(f"need max_operand >= 2 and max_value >= 2*max_operand, got {max_operand}, {max_value}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if distractors < 0:
            raise ValueError(f"distractors must be >= 0, got {distractors}")
        self.size, self.min_steps, self.max_steps = size, min_steps, max_steps
        self.max_operand, self.max_value, self.split, self.seed = max_operand, max_value, split, seed
        self.distractors = distractors
        self.name = f"synthetic-{split}"
        self._cached = lru_cache(maxsize=None)(self._generate)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int | slice) -> Problem | list[Problem]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(f"problem index {index} out of range for {self.size} problems")
        return self._cached(index)

    def __iter__(self) -> Iterator[Problem]:
        return (self[i] for i in range(self.size))

    def sample(self, rng: random.Random | int | None = None) -> Problem:
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return self[rng.randrange(self.size)]

    def difficulties(self) -> list[int]:
        return list(range(self.min_steps, self.max_steps + 1))

    def difficulty_of(self, index: int) -> int:
        return self.min_steps + index % (self.max_steps - self.min_steps + 1)

    def _generate(self, index: int) -> Problem:
        steps = self.difficulty_of(index)
        rng = random.Random(f"synthetic:{self.seed}:{self.split}:{index}")
        for _attempt in range(10_000):
            story = _Story(rng, self.max_operand, self.max_value)
            while len(story.program) < steps and story.event(steps - len(story.program)):
                pass
            if len(story.program) != steps:
                continue
            question = story.question()
            if _split_of(question) != self.split:  # the split of the story itself, whatever is added to it
                continue
            lines, result = render_steps(story.program)
            answer = format_number(result)
            metadata: dict = {"program": [op.to_list() for op in story.program]}
            name = f"synthetic-{self.split}-s{self.seed}-{index}"
            if self.distractors:  # their own random stream: the story and its split stay those of distractors=0
                extra = random.Random(f"distractors:{self.seed}:{self.split}:{index}")
                count = extra.randint(0, self.distractors)
                question = story.question(story.with_distractors(extra, count))
                metadata["distractors"] = count
                name = f"synthetic-{self.split}-s{self.seed}-d{self.distractors}-{index}"
            return Problem(
                id=name,
                question=question,
                answer=answer,
                steps=tuple(lines) + (answer_line(answer),),
                difficulty=steps,
                source="synthetic",
                metadata=metadata,
            )
        raise RuntimeError(f"could not generate a {steps}-step problem in range {self.max_operand}/{self.max_value}")


def program_of(problem: Problem) -> list[StepOp]:
    try:
        return [StepOp(a, op, b, bool(ar), bool(br)) for a, op, b, ar, br in problem.metadata["program"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"problem {problem.id} has no synthetic program in its metadata") from err


@dataclass(frozen=True)
class CorruptedSolution:
    """A solution with one injected error at ``error_step`` (1-based) whose later steps build on it."""

    steps: tuple[str, ...]
    error_step: int
    kind: str
    answer: str


def corrupt_solution(problem: Problem, error_step: int, kind: str, rng: random.Random) -> CorruptedSolution:
    """Make step ``error_step`` wrong in the way ``kind`` says and recompute the steps after it from there.

    ``calculation``: the step's arithmetic is off; ``operand``: a number from the story is misread;
    ``operation``: the wrong operation is applied; ``skipped``: the step is left out, so its result is taken to
    be its first operand (an event of the story ignored) and the solution has one line fewer. Later steps are
    computed correctly from the wrong value, as an actor that made one mistake would.
    """
    if kind not in ALL_ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; valid: {', '.join(ALL_ERROR_KINDS)}")
    program = program_of(problem)
    if not 1 <= error_step <= len(program):
        raise ValueError(f"error_step {error_step} outside 1..{len(program)}")
    i = error_step - 1
    original = program[i]
    if kind == "operand" and original.a_ref and original.b_ref:
        kind = "calculation"  # no literal to misread
    if kind == "skipped" and len(program) == 1:
        kind = "calculation"  # nothing would be left
    results: list[Fraction] = []
    lines = []
    for j, step in enumerate(program):
        a = results[step.a - 1] if step.a_ref else Fraction(step.a)
        b = results[step.b - 1] if step.b_ref else Fraction(step.b)
        op, correct = step.op, _apply(a, step.op, b)
        if j == i and kind == "skipped":
            if correct != a:
                results.append(a)
                continue
            kind = "calculation"  # skipping a step that changes nothing (x*1) is no error
        if j == i and kind == "operand":
            if not step.b_ref:
                b = Fraction(_misread(step.b, rng))
            else:
                a = Fraction(_misread(step.a, rng))
        elif j == i and kind == "operation":
            alternatives = {o: _apply(a, o, b) for o in OPS if o != step.op} if b != 0 else {}
            whole = [o for o, v in alternatives.items() if v >= 0 and v.denominator == 1 and v != correct]
            if whole:  # an actor in a whole-number world makes whole-number mistakes
                op = rng.choice(whole)
            else:
                kind = "calculation"
        r = _apply(a, op, b)
        if j == i and r == correct:
            kind = "calculation"  # the corruption happened to give the right value (0*3 vs 0+0): slip instead
        if j == i and kind == "calculation":
            delta = 0
            while delta == 0 or r + delta < 0:
                delta = rng.choice([-1, 1]) * rng.randint(1, max(2, min(10, int(abs(r)) // 3 + 1)))
            r = r + delta
        results.append(r)
        lines.append(step_line(len(lines) + 1, a, op, b, r))
    answer = format_number(results[-1])
    # a skipped step shows at or after the line that now stands in its place (the answer line if it was the last)
    return CorruptedSolution(tuple(lines) + (answer_line(answer),), error_step, kind, answer)


def _misread(n: int, rng: random.Random) -> int:
    candidates = [m for m in range(max(1, n - 9), n + 10) if m != n]
    if n >= 10 and int(str(n)[::-1]) != n:
        candidates += [int(str(n)[::-1])] * 5  # swapped digits, the classic misread
    return rng.choice(candidates)
