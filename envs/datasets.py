"""GSM8K and MATH problem sources from local JSONL files (or the Hugging Face hub when it is reachable), and any
JSONL file of either shape (``problems=jsonl problems.path=FILE``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.problem import ListProblemSource, Problem, answer_line
from storage import read_jsonl

__all__ = ["DatasetFormatError", "data_path", "default_data_dir", "jsonl_problem", "load_gsm8k", "load_jsonl", "load_math",
           "read_jsonl_problems"]

DATA_DIR_ENV = "CRITIQUE_GYM_DATA"


class DatasetFormatError(ValueError):
    """A dataset row that cannot be turned into a problem; the message names the file and line."""


def default_data_dir() -> Path:
    """``$CRITIQUE_GYM_DATA`` if set, else ``../shared/data`` beside the checkout (an optional convenience)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


DATA_SCHEME = "data://"


def data_path(path: str | os.PathLike) -> Path:
    """A path, or ``data://<relative path>`` inside :func:`default_data_dir` (how configs name shipped data)."""
    text = str(path)
    if text.startswith(DATA_SCHEME):
        return default_data_dir() / text.removeprefix(DATA_SCHEME)
    return Path(text)


def read_jsonl_problems(path: Path, to_problem: Callable[[dict[str, Any], int], Problem]) -> list[Problem]:
    problems = []
    try:
        for lineno, row in read_jsonl(path):
            try:
                problems.append(to_problem(row, lineno))
            except (KeyError, TypeError, ValueError) as err:
                raise DatasetFormatError(f"{path}:{lineno}: {err}") from err
    except DatasetFormatError:
        raise
    except ValueError as err:  # a line that is not a JSON object
        raise DatasetFormatError(str(err)) from err
    return problems


def _require(row: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if not isinstance(row.get(k), str) or not row[k].strip()]
    if missing:
        raise ValueError(f"missing or empty field(s) {missing}; the row has {sorted(row)}")


def gsm8k_problem(row: dict[str, Any], index: int, split: str = "test") -> Problem:
    _require(row, "question", "answer")
    body, sep, gold = row["answer"].rpartition("####")
    if not sep or not gold.strip():
        raise ValueError("the answer field has no '#### <answer>' line")
    gold = gold.strip().replace(",", "")
    steps = [line.strip() for line in body.strip().split("\n") if line.strip()]
    return Problem(
        id=f"gsm8k-{split}-{index}",
        question=row["question"].strip(),
        answer=gold,
        steps=tuple(steps) + (answer_line(gold),),
        difficulty=max(1, row["answer"].count("<<")),
        source="gsm8k",
    )


def math_problem(row: dict[str, Any], index: int, split: str = "test") -> Problem:
    _require(row, "problem", "answer")
    solution = row.get("solution") or ""
    steps = [line.strip() for line in solution.split("\n") if line.strip()]
    level = row.get("level")
    if isinstance(level, str) and level.startswith("Level "):
        level = level.removeprefix("Level ")
    return Problem(
        id=str(row.get("unique_id") or f"math-{split}-{index}"),
        question=row["problem"].strip(),
        answer=row["answer"].strip(),
        steps=(tuple(steps) + (answer_line(row["answer"].strip()),)) if steps else None,
        difficulty=int(level) if level not in (None, "", "?") else None,
        source="math",
        metadata={"subject": row.get("subject", "")},
    )


def _load(
    name: str,
    path: str | os.PathLike | None,
    default_rel: str,
    hub_id: str | None,
    hub_config: str | None,
    split: str,
    to_problem: Callable[[dict[str, Any], int, str], Problem],
    limit: int | None,
) -> ListProblemSource:
    file = Path(path) if path else default_data_dir() / default_rel
    if file.exists():
        problems = read_jsonl_problems(file, lambda row, i: to_problem(row, i, split))
    elif hub_id:
        problems = _from_hub(hub_id, hub_config, split, to_problem)
    else:
        raise FileNotFoundError(f"{name}: no file at {file}; pass a path or set ${DATA_DIR_ENV}")
    return ListProblemSource(problems[:limit] if limit else problems, name=f"{name}-{split}")


def _from_hub(hub_id: str, config: str | None, split: str, to_problem) -> list[Problem]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover
        raise FileNotFoundError(f"no local file for {hub_id} and `datasets` is not installed") from err
    rows: Iterable[dict] = datasets.load_dataset(hub_id, config, split=split)
    return [to_problem(dict(row), i + 1, split) for i, row in enumerate(rows)]


def load_gsm8k(path: str | None = None, split: str = "test", limit: int | None = None,
               hub_id: str | None = "openai/gsm8k") -> ListProblemSource:
    """GSM8K from ``path`` (or ``<data dir>/gsm8k/<split>.jsonl``); the hub only if no local file exists."""
    return _load("gsm8k", path, f"gsm8k/{split}.jsonl", hub_id, "main", split, gsm8k_problem, limit)


def load_math(path: str | None = None, split: str = "test", limit: int | None = None,
              hub_id: str | None = "HuggingFaceH4/MATH-500") -> ListProblemSource:
    """MATH(-500) from ``path`` (or ``<data dir>/math500/<split>.jsonl``); the hub only if no local file exists."""
    return _load("math", path, f"math500/{split}.jsonl", hub_id, None, split, math_problem, limit)


def jsonl_problem(row: dict[str, Any], index: int, split: str = "test") -> Problem:
    """A row of either shape: MATH's (``problem``, ``answer``, optional ``solution``, ``level``) or GSM8K's
    (``question``, ``answer`` ending in ``#### <answer>``), or ``question`` with a plain ``answer``."""
    if "problem" in row:
        return math_problem(row, index, split)
    _require(row, "question", "answer")
    if "####" in str(row["answer"]):
        return gsm8k_problem(row, index, split)
    level = row.get("level", row.get("difficulty"))
    return Problem(id=str(row.get("id") or f"jsonl-{split}-{index}"), question=str(row["question"]).strip(),
                   answer=str(row["answer"]).strip(), steps=None,
                   difficulty=int(level) if level not in (None, "") else None, source="jsonl")


def load_jsonl(path: str | None = None, split: str = "test", limit: int | None = None) -> ListProblemSource:
    """Problems of any JSONL file (``problems.path``); every split reads the same file."""
    if not path:
        raise FileNotFoundError("problems=jsonl needs problems.path=<a JSONL file>")
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"problems.path: no file at {file}")
    problems = read_jsonl_problems(file, lambda row, i: jsonl_problem(row, i, split))
    return ListProblemSource(problems[:limit] if limit else problems, name=f"jsonl-{split}")
