"""The three AutoMathCritique stages end to end, and the dataset they write.

One row per (problem, response, critique, provenance), JSONL, loadable with ``datasets.load_dataset("json",
data_files=...)``. The file and its stats appear atomically: a killed run leaves the old files or none.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.actor import Actor
from autocritique.annotate import Annotation, Annotator, OracleAnnotator
from autocritique.flawed import (
    FlawedResponse,
    located_errors,
    prompted_errors,
    sample_responses,
    text_errors,
    typed_errors,
)
from autocritique.refine_filter import refinement_filter
from core.config import config_from_dict
from core.critique import Critique
from core.problem import Problem
from critics.paper_format import to_sharegpt
from envs.math_env import EnvConfig
from envs.synthetic import ALL_ERROR_KINDS
from storage import atomic_write_json, atomic_write_jsonl, read_jsonl

__all__ = ["AutoCritiqueConfig", "build_critique_dataset", "plan_sources", "write_dataset", "write_paper_rows",
           "read_dataset"]


@dataclass
class AutoCritiqueConfig:
    """How many responses each Stage-1 source contributes, and the Stage-3 check."""

    seed: int = 0
    sampled_problems: int = 8_000    # the actor's own samples (natural mistakes)
    sampled_per_problem: int = 1
    sample_temperature: float = 1.0
    located_problems: int = 3_000    # error-location control: the actor continues after an injected error
    typed_problems: int = 5_000      # error-type control: one programmatic mistake
    typed_per_problem: int = 1
    reference_problems: int = 3_000  # reference solutions (critiques that say "correct")
    kinds: tuple[str, ...] = ALL_ERROR_KINDS
    refine_samples: int = 2          # Stage 3: refinements per "wrong" critique (0: filter off)
    refine_threshold: float = 0.5
    refine_temperature: float = 0.7
    batch_size: int = 64

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoCritiqueConfig:
        return config_from_dict(cls, {**d, "kinds": tuple(d["kinds"])} if "kinds" in d else d, "autocritique")

    @property
    def total_problems(self) -> int:
        return self.sampled_problems + self.located_problems + self.typed_problems + self.reference_problems


@dataclass
class PipelineStats:
    responses: Counter = field(default_factory=Counter)       # stage 1, by source
    annotated: Counter = field(default_factory=Counter)       # stage 2, by source
    kept: Counter = field(default_factory=Counter)            # stage 3, by source
    dropped: Counter = field(default_factory=Counter)         # by reason
    verdicts: Counter = field(default_factory=Counter)        # kept rows: correct / wrong
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: dict(getattr(self, k)) for k in self.__dataclass_fields__}


def plan_sources(problems: Sequence[Problem], config: AutoCritiqueConfig) -> list[str]:
    """What stage 1 does differently for problems without a synthetic program, said before it runs."""
    if all("program" in p.metadata for p in problems):
        return []
    notes = []
    if config.located_problems:
        notes.append("error-location control needs a reference program to inject the mistake: the actor is "
                     "prompted to continue the reference with a mistake at a chosen step instead (source 'prompted')")
    if config.typed_problems:
        notes.append("error-type control without a program: a calculation slip written into the reference where a "
                     "step has a checkable computation (GSM8K's <<a*b=c>> notes), else a prompted mistake")
    return notes


def build_critique_dataset(problems: Sequence[Problem], actor: Any, config: AutoCritiqueConfig,
                           annotator: Annotator | None = None, env: EnvConfig | None = None,
                           ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Stage 1 -> 2 -> 3 over ``problems`` (sliced in order among the sources); returns rows and stats.

    Problems without a synthetic program (GSM8K, MATH) get their mistakes as :func:`plan_sources` says.
    """
    rng = random.Random(config.seed)
    annotator = annotator or OracleAnnotator()
    stats = PipelineStats()
    cuts = [config.sampled_problems, config.located_problems, config.typed_problems, config.reference_problems]
    if sum(cuts) > len(problems):
        raise ValueError(f"the autocritique config asks for {sum(cuts)} problems but {len(problems)} were given")
    bounds = [sum(cuts[:i]) for i in range(5)]
    sampled, located, typed, reference = (problems[bounds[i]:bounds[i + 1]] for i in range(4))

    start = time.perf_counter()
    responses: list[FlawedResponse] = []
    if sampled:
        responses += sample_responses(sampled, _with_temperature(actor, config.sample_temperature),
                                      config.sampled_per_problem, config.batch_size, config.seed, env)
    programmatic = all("program" in p.metadata for p in problems)
    prompted = replace(actor.sampling, temperature=config.refine_temperature, n=1)
    if located and programmatic:
        responses += located_errors(located, actor, rng, kinds=config.kinds)
    elif located:
        responses += prompted_errors(located, actor.backend, rng, sampling=prompted, template=actor.template)
    if typed and programmatic:
        responses += typed_errors(typed, rng, config.typed_per_problem, config.kinds)
    elif typed:
        slips = text_errors(typed, rng)
        written = {r.problem.id for r in slips}
        rest = [p for p in typed if p.id not in written]
        responses += slips + prompted_errors(rest, actor.backend, rng, sampling=prompted, template=actor.template,
                                             source="typed")
    responses += [FlawedResponse(p, tuple(p.steps), "reference") for p in reference if p.steps]
    stats.responses.update(r.source for r in responses)
    stats.seconds["flawed"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    annotations = annotator.annotate(responses)
    stats.annotated.update(a.response.source for a in annotations if a.critique is not None)
    stats.seconds["annotate"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    decisions = refinement_filter(annotations, actor, config.refine_samples, config.refine_threshold,
                                  config.refine_temperature, config.seed)
    stats.seconds["filter"] = round(time.perf_counter() - start, 1)

    rows = []
    for a, d in zip(annotations, decisions):
        if not d.keep:
            stats.dropped[d.reason] += 1
            continue
        stats.kept[a.response.source] += 1
        stats.verdicts["correct" if a.critique.is_correct else "wrong"] += 1
        rows.append(_row(a, d, annotator.name, len(rows)))
    summary = stats.to_dict()
    summary["rows"] = len(rows)
    summary["annotator"] = annotator.name
    summary["notes"] = plan_sources(problems, config)
    if getattr(annotator, "parse_failures", None):
        summary["annotator_parse_failures"] = dict(annotator.parse_failures)
    summary["config"] = asdict(config)
    return rows, summary


def _with_temperature(actor: Any, temperature: float) -> Any:
    return Actor(actor.backend, actor.template, replace(actor.sampling, temperature=temperature, seed=actor.sampling.seed),
                 actor.action_unit)


def _row(a: Annotation, decision: Any, annotator: str, index: int) -> dict[str, Any]:
    r, critique = a.response, a.critique
    return {
        "id": f"{r.problem.id}/{r.source}/{index}",
        "problem_id": r.problem.id,
        "question": r.problem.question,
        "answer": r.problem.answer,
        "reference": list(r.problem.steps),
        "difficulty": r.problem.difficulty,
        "dataset": r.problem.source,
        "source": r.source,
        "error_step": r.error_step,
        "error_kind": r.error_kind,
        "steps": list(r.steps),
        "answer_correct": r.answer_correct,
        "critique": critique.render(),
        "is_correct": critique.is_correct,
        "first_error_step": critique.first_error_step,
        "annotator": annotator,
        "refinements": decision.refinements,
        "refinements_fixed": decision.fixed,
    }


def write_paper_rows(out_dir: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """``critiques_sharegpt.jsonl``: a dataset's critiques as the paper's ShareGPT rows (to train critics
    elsewhere), written atomically."""
    return atomic_write_jsonl(Path(out_dir) / "critiques_sharegpt.jsonl",
                              (to_sharegpt(r["question"], r["steps"], Critique.parse(r["critique"], num_steps=len(r["steps"])))
                               for r in rows))


def write_dataset(out_dir: str | Path, rows: Sequence[dict[str, Any]], stats: dict[str, Any]) -> Path:
    """``critiques.jsonl`` and ``stats.json`` in ``out_dir``, each written atomically (data first)."""
    out_dir = Path(out_dir)
    path = atomic_write_jsonl(out_dir / "critiques.jsonl", rows)
    atomic_write_json(out_dir / "stats.json", stats)
    return path


def dataset_provenance(path: str | Path) -> dict[str, Any] | None:
    """What a critiques.jsonl was built from (its ``stats.json``: rows and config), for a critic's
    ``recipe.json``; None when the file has no stats beside it."""
    import json

    stats = Path(path).parent / "stats.json"
    if not stats.exists():
        return None
    s = json.loads(stats.read_text())
    return {"rows": s["rows"], "config": s["config"]}


def read_dataset(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a critique dataset; a malformed row is an error naming the file and line."""
    rows = []
    for number, row in read_jsonl(path):
        try:
            Critique.parse(row["critique"], num_steps=len(row["steps"]))
            row["question"], row["steps"]  # noqa: B018 - required keys
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{number}: malformed critique row ({type(err).__name__}: {err})") from err
        rows.append(row)
    return rows
