"""Problems and the one protocol every problem source implements."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

__all__ = ["Problem", "ProblemSource", "ListProblemSource", "ANSWER_PREFIX", "answer_line", "replicate"]

ANSWER_PREFIX = "Answer:"


def answer_line(answer: str) -> str:
    """The last line of every solution in the project's step format."""
    return f"{ANSWER_PREFIX} {answer}"


@dataclass(frozen=True)
class Problem:
    """One math problem: what the actor sees, what the verifier checks, what the oracle critic reads."""

    id: str
    question: str
    answer: str
    steps: tuple[str, ...] | None = None  # reference solution, one step per item, ending with the answer line
    difficulty: int | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "steps": list(self.steps) if self.steps is not None else None,
            "difficulty": self.difficulty,
            "source": self.source,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Problem:
        steps = row.get("steps")
        return cls(
            id=str(row["id"]),
            question=row["question"],
            answer=str(row["answer"]),
            steps=tuple(steps) if steps is not None else None,
            difficulty=row.get("difficulty"),
            source=row.get("source", ""),
            metadata=dict(row.get("metadata") or {}),
        )


@runtime_checkable
class ProblemSource(Protocol):
    """A finite, indexable, seeded collection of problems."""

    name: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Problem: ...

    def __iter__(self) -> Iterator[Problem]: ...

    def sample(self, rng: random.Random | int | None = None) -> Problem: ...


class ListProblemSource:
    """A problem source over an in-memory list; the base for file-backed sources."""

    def __init__(self, problems: Sequence[Problem], name: str = "list"):
        self.name = name
        self._problems = list(problems)

    def __len__(self) -> int:
        return len(self._problems)

    def __getitem__(self, index: int) -> Problem:
        return self._problems[index]

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._problems)

    def sample(self, rng: random.Random | int | None = None) -> Problem:
        if not self._problems:
            raise ValueError(f"problem source {self.name!r} is empty")
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return self._problems[rng.randrange(len(self._problems))]

    def difficulties(self) -> list[int]:
        return sorted({p.difficulty for p in self._problems if p.difficulty is not None})


def replicate(problems: Sequence[Problem], copies: int | Sequence[int], tag: str = "") -> list[Problem]:
    """Copies of each problem (``copies`` each, or per problem) with distinct ids ``<id>#<tag><j>`` that
    remember the original in ``metadata["replica_of"]``: one episode per sample."""
    counts = [copies] * len(problems) if isinstance(copies, int) else list(copies)
    return [replace(p, id=f"{p.id}#{tag}{j}", metadata={**p.metadata, "replica_of": p.id})
            for p, k in zip(problems, counts) for j in range(k)]
