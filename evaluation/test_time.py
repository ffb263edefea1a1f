"""Test-time supervision measured from episode records: critique -> refine rounds, and parallel scaling.

Everything here reads :class:`~envs.math_env.EpisodeRecord`s written by the environment and the batched rollout
(no second evaluation path). An episode run with ``max_refinements=R`` holds every round: ``attempts[r]`` is
the solution the critic reviewed after r refinements, so accuracy after 0..R rounds, fixes and breaks, and the
tokens each round cost come from one run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.episode import EpisodeRecord
from evaluation.metrics import paired_change
from evaluation.voting import Sample, choose

__all__ = ["RoundOutcome", "keep_first", "rounds_of", "refinement_summary", "samples_of", "scaling_curves", "budget_matched"]


@dataclass(frozen=True)
class RoundOutcome:
    correct: bool
    answer: str | None
    tokens: int     # tokens generated (actor, and critic where it reports them) up to and including this round
    accepted: bool  # the critic found no error in this round's solution
    scored_tokens: int = 0  # tokens a likelihood-gated critic scored (read, not generated) up to this round


def rounds_of(record: EpisodeRecord, max_rounds: int) -> list[RoundOutcome]:
    """The outcome after 0..max_rounds refinements (an episode that stopped early keeps its last outcome)."""
    outcomes: list[RoundOutcome] = []
    tokens = scored = 0
    attempts = record.attempts or []
    for r, attempt in enumerate(attempts[: max_rounds + 1]):
        if r < len(record.generations):
            tokens += len(record.generations[r].completion_ids)
        tokens += int(attempt.critique.extras.get("tokens", 0))
        scored += int(attempt.critique.extras.get("scored_tokens", 0))
        result = attempt.verification
        outcomes.append(RoundOutcome(attempt.correct, result.extracted if result else None, tokens,
                                     attempt.critique.is_correct, scored))
    if not outcomes:  # no attempt reviewed (e.g. an action error ended it): the final state is round 0
        tokens = sum(len(g.completion_ids) for g in record.generations)
        outcomes.append(RoundOutcome(record.correct, record.final_answer, tokens, True))
    while len(outcomes) < max_rounds + 1:
        outcomes.append(outcomes[-1])
    return outcomes


def keep_first(rounds: Sequence[RoundOutcome]) -> list[RoundOutcome]:
    """The same rounds under the rule "answer with the first attempt unless the critic accepted a refinement":
    a refinement the critic also rejects does not replace the original (tokens stay as spent)."""
    return [o if r == 0 or o.accepted else replace(rounds[0], tokens=o.tokens, scored_tokens=o.scored_tokens)
            for r, o in enumerate(rounds)]


def refinement_summary(records: Sequence[EpisodeRecord], max_rounds: int) -> dict[str, Any]:
    """Accuracy by difficulty after each round, and how often a round fixed a wrong answer or broke a right one;
    ``keep_first`` is the same under :func:`keep_first`'s rule."""
    by_level: dict[str, list[list[bool]]] = defaultdict(list)
    kept_by_level: dict[str, list[list[bool]]] = defaultdict(list)
    fixes = [0] * (max_rounds + 1)
    breaks = [0] * (max_rounds + 1)
    tokens = [0] * (max_rounds + 1)
    diffs: dict[str, list[list[int]]] = {"refine": [], "keep_first": []}  # per problem, each round less round 0
    for record in records:
        rounds = rounds_of(record, max_rounds)
        kept = keep_first(rounds)
        by_level[str(record.problem.difficulty)].append([o.correct for o in rounds])
        kept_by_level[str(record.problem.difficulty)].append([o.correct for o in kept])
        for key, outcomes in (("refine", rounds), ("keep_first", kept)):
            diffs[key].append([int(o.correct) - int(rounds[0].correct) for o in outcomes])
        for r in range(1, max_rounds + 1):
            fixes[r] += (not rounds[r - 1].correct) and rounds[r].correct
            breaks[r] += rounds[r - 1].correct and not rounds[r].correct
        for r in range(max_rounds + 1):
            tokens[r] += rounds[r].tokens
    n = len(records)
    table, overall = _by_round(by_level, max_rounds)
    kept_table, kept_overall = _by_round(kept_by_level, max_rounds)
    change = {key: {f"R={r}": paired_change([d[r] for d in values]) for r in range(1, max_rounds + 1)}
              for key, values in diffs.items()}
    return {
        "by_round": table,
        "overall": overall,
        "change": change["refine"],  # each round's accuracy less the actor's alone, paired by problem, 95 % interval
        "keep_first": {"by_round": kept_table, "overall": kept_overall, "change": change["keep_first"]},
        "fixed": {f"R={r}": fixes[r] for r in range(1, max_rounds + 1)},
        "broken": {f"R={r}": breaks[r] for r in range(1, max_rounds + 1)},
        "mean_tokens": {f"R={r}": round(tokens[r] / n, 1) if n else None for r in range(max_rounds + 1)},
        "episodes": n,
    }


def _by_round(by_level: dict[str, list[list[bool]]], max_rounds: int) -> tuple[dict, dict]:
    levels = sorted(by_level.items(), key=lambda kv: int(kv[0]))
    table = {f"R={r}": {level: _acc([v[r] for v in values]) for level, values in levels} for r in range(max_rounds + 1)}
    overall = {f"R={r}": _acc([v[r] for _, values in levels for v in values]) for r in range(max_rounds + 1)}
    return table, overall


def _acc(values: Sequence[bool]) -> dict[str, Any]:
    return {"n": len(values), "correct": sum(values), "accuracy": round(sum(values) / len(values), 4) if values else None}


def samples_of(records: Sequence[EpisodeRecord], k_max: int, rounds: int = 0) -> dict[str, list[Sample]]:
    """Group the records of replicated problems (see :func:`core.problem.replicate`) into per-problem sample lists.

    ``rounds`` picks the outcome after that many refinements (0: the samples as drawn, with the critic's
    verdict on them). Token counts include every round up to it.
    """
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for record in records:
        base = record.problem.metadata.get("replica_of", record.problem.id)
        outcome = rounds_of(record, rounds)[rounds]
        grouped[base].append(Sample(outcome.answer, outcome.correct, outcome.accepted, outcome.tokens,
                                    outcome.scored_tokens))
    return {k: v[:k_max] for k, v in grouped.items()}


def scaling_curves(samples: dict[str, list[Sample]], difficulty: dict[str, int], ks: Sequence[int],
                   methods: Sequence[str]) -> dict[str, Any]:
    """``{method: {"k=..": {"overall": acc, "by_difficulty": {...}, "mean_tokens": t}}}``."""
    out: dict[str, Any] = {}
    for method in methods:
        out[method] = {}
        for k in ks:
            by_level: dict[str, list[bool]] = defaultdict(list)
            tokens, scored = [], []
            for pid, s in samples.items():
                if len(s) < k:
                    raise ValueError(f"problem {pid} has {len(s)} samples, fewer than k={k}")
                by_level[str(difficulty[pid])].append(choose(method, s, k))
                tokens.append(sum(x.tokens for x in s[:k]))
                scored.append(sum(x.scored_tokens for x in s[:k]))
            every = [v for values in by_level.values() for v in values]
            out[method][f"k={k}"] = {
                "overall": round(sum(every) / len(every), 4),
                "by_difficulty": {lvl: round(sum(v) / len(v), 4) for lvl, v in sorted(by_level.items(),
                                                                                      key=lambda kv: int(kv[0]))},
                "mean_tokens": round(sum(tokens) / len(tokens), 1),
                "mean_scored_tokens": round(sum(scored) / len(scored), 1),
            }
    return out


def budget_matched(samples: dict[str, list[Sample]], budget_per_problem: float, levels: Sequence[str] | None,
                   difficulty: dict[str, int]) -> dict[str, Any]:
    """Plain majority voting given the same mean token budget: as many samples as that budget buys (at least 1).
    ``capped``: the budget buys more samples than were drawn, so majority voting got fewer tokens than the method."""
    per_sample = sum(x.tokens for s in samples.values() for x in s) / max(1, sum(len(s) for s in samples.values()))
    bought = max(1, round(budget_per_problem / max(per_sample, 1e-9)))
    drawn = min(len(s) for s in samples.values())
    k = min(drawn, bought)
    chosen = [choose("majority", s, k) for pid, s in samples.items()
              if levels is None or str(difficulty[pid]) in levels]
    return {"k": k, "accuracy": round(sum(chosen) / len(chosen), 4) if chosen else None, "capped": bought > drawn,
            "budget_per_problem": round(budget_per_problem, 1), "tokens_per_sample": round(per_sample, 1)}
