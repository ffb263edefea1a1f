"""Weights & Biases tracking: metrics, and episodes as tables a user can click through.

Offline by default (no account, no network: ``wandb sync <run_dir>/wandb/offline-run-*`` uploads later);
``tracking.mode=online`` when logged in; ``tracking.mode=disabled`` turns it off. A disabled tracker accepts
every call and does nothing, so callers never branch on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.critique import Critique
from core.episode import EpisodeRecord

__all__ = ["Tracker", "CRITIQUE_COLUMNS", "EPISODE_COLUMNS", "critique_rows", "episode_rows", "parse_markdown_table",
           "scalars"]

MODES = ("offline", "online", "disabled")
EPISODE_COLUMNS = ["problem_id", "difficulty", "problem", "round", "solution", "critic_verdicts", "feedback",
                   "final_answer", "gold", "reward"]
CRITIQUE_COLUMNS = ["problem_id", "difficulty", "problem", "set", "solution", "critic_verdicts", "feedback",
                    "critic_first_error", "true_first_error", "critic_says_wrong", "truly_wrong", "gold"]


class Tracker:
    def __init__(self, mode: str, run_dir: str | Path, project: str = "critique-gym", name: str | None = None,
                 config: dict[str, Any] | None = None, group: str | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown tracking mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode, self.run = mode, None
        if mode == "disabled":
            return
        # before wandb starts: an offline run given mode="offline" alone still has wandb's service and its
        # analytics look up remote hosts; with the mode in its environment they never start
        if mode == "offline":
            os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, name=name, group=group, dir=str(run_dir), mode=mode,
                              config=config or {}, reinit="create_new",
                              settings=wandb.Settings(console="off", x_disable_stats=True, disable_git=True))

    @property
    def directory(self) -> Path | None:
        """The run's local folder (``.../wandb/offline-run-...``), or None when disabled."""
        return Path(self.run.dir).parent if self.run is not None else None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def markdown_tables(self, prefix: str, tables: dict[str, str]) -> None:
        """The results format's markdown tables as ``wandb.Table``s (one per table, its title kept)."""
        for key, md in tables.items():
            parsed = parse_markdown_table(md)
            if parsed is not None:
                self.table(f"{prefix}/{key}", *parsed)

    def curves(self, step_key: str, points: Sequence[dict[str, Any]]) -> None:
        """Points logged against their own x (``step_key``, e.g. the iteration), so several curves that each
        start at 0 share one run without W&B's step running backwards."""
        if self.run is not None:
            self.run.define_metric(step_key)
            for key in {k for point in points for k in point if k != step_key}:
                self.run.define_metric(key, step_metric=step_key)
            for point in points:
                self.run.log(point)

    def artifact(self, name: str, kind: str, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
        """A dataset or checkpoint as an artifact: small files are copied in, folders referenced where they lie
        (``file://``: checksummed, not copied, so a 2 GB checkpoint costs nothing)."""
        if self.run is None:
            return
        import wandb

        path = Path(path).resolve()
        art = wandb.Artifact(name, type=kind, metadata=metadata or {})
        if path.is_dir():
            art.add_reference(path.as_uri(), name=path.name)
        else:
            art.add_file(str(path))
        self.run.log_artifact(art)

    def image(self, key: str, path: str | Path) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path))})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def scalars(metrics: Any, prefix: str = "", limit: int = 400) -> dict[str, float]:
    """The numbers of a nested metrics dict as flat ``a/b/c`` keys (at most ``limit``: a summary, not a dump)."""
    flat: dict[str, float] = {}

    def walk(node: Any, key: str) -> None:
        if len(flat) >= limit:
            return
        if isinstance(node, bool):
            flat[key] = float(node)
        elif isinstance(node, int | float):
            flat[key] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}/{k}" if key else str(k))

    walk(metrics, prefix)
    return flat


def parse_markdown_table(md: str) -> tuple[list[str], list[list[str]]] | None:
    """``(columns, rows)`` of the first pipe table in ``md`` (the project's own tables), None if it has none."""
    lines = [line.strip() for line in md.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        return None
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    columns, body = cells[0], [c for c in cells[2:] if len(c) == len(cells[0])]
    return columns, body


def episode_rows(records: Sequence[EpisodeRecord]) -> list[list[Any]]:
    """One row per reviewed attempt: what the actor wrote, what the critic said of each step, what came of it."""
    rows = []
    for record in records:
        p = record.problem
        attempts = record.attempts or []
        for r, attempt in enumerate(attempts):
            verdicts = "\n".join(j.render() for j in attempt.critique.steps) or "(no review)"
            first = attempt.critique.first_error_step
            feedback = attempt.critique.feedback_for(first) if first else ""
            if attempt.critique.hint:
                feedback = f"{feedback} Hint: {attempt.critique.hint}".strip()
            last = r == len(attempts) - 1
            rows.append([p.id, p.difficulty, p.question, r, "\n".join(attempt.steps), verdicts, feedback,
                         record.final_answer if last else "", p.answer, record.total_reward if last else None])
        if not attempts:
            rows.append([p.id, p.difficulty, p.question, 0, "\n".join(record.steps), "(no review)", "",
                         record.final_answer, p.answer, record.total_reward])
    return rows


def critique_rows(solutions: Sequence[Any], critiques: Sequence[Critique]) -> list[list[Any]]:
    """One row per judged solution (``evaluation.critic_eval.LabeledSolution``): the critic's verdict per step
    beside the verifier's and the oracle's truth, so its false alarms and misses can be read one by one."""
    rows = []
    for sol, critique in zip(solutions, critiques):
        p, first = sol.problem, critique.first_error_step
        verdicts = "\n".join(j.render() for j in critique.steps) or "(no review)"
        rows.append([p.id, p.difficulty, p.question, sol.subset, "\n".join(sol.steps), verdicts,
                     critique.feedback_for(first) if first else "", first, sol.first_error, not critique.is_correct,
                     sol.wrong, p.answer])
    return rows
