"""The test-time supervision stage: critique -> refine rounds and parallel scaling, for each critic side by side.

1. Greedy actor, each critic, up to ``max_rounds`` refinements (one rollout per critic holds every round);
   refinements are sampled at ``refine_temperature`` (0: greedy, which rewrites a flagged step the same way
   every round).
2. ``k_max`` samples per problem at ``temperature`` drawn once (one rollout, no critic), and more, up to
   ``budget_k_max``, for plain majority voting given the tokens a critic method spends.
3. Each critic reviews those same samples and refines the flagged ones (a :class:`PresampledActor` replays the
   samples as first actions). From that one rollout: majority voting, critic-filtered majority, best-of-k and
   pass@k over the drawn samples, and refine-then-vote (sequential + parallel), with every generated token
   counted so methods of different cost are compared at equal budget.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agents.actor import Actor
from core.problem import replicate
from critics.base import NullCritic
from evaluation.report import test_time_plots, test_time_scalars, test_time_tables
from evaluation.test_time import budget_matched, refinement_summary, samples_of, scaling_curves
from evaluation.tracking import EPISODE_COLUMNS, episode_rows
from evaluation.voting import choose
from pipeline.config import ConfigError
from pipeline.context import Run
from pipeline.schema import EvalTestTimeConfig
from rollout.loop import PresampledActor, rollout

__all__ = ["eval_test_time"]


def _problems(run: Run, t: EvalTestTimeConfig) -> list:
    """``problems_per_level`` seeded problems of each level, of any source."""
    return run.problems("test_time", t.split, t.problems_per_level, levels=t.levels or run.levels)


def eval_test_time(run: Run, t: EvalTestTimeConfig) -> dict[str, Any]:
    if t.split not in ("train", "test"):
        raise ConfigError(f"test_time.split must be 'train' or 'test', got {t.split!r}")
    if max(t.ks) > t.k_max:
        raise ConfigError(f"test_time.ks {t.ks} go beyond test_time.k_max={t.k_max}")
    actor = run.actor()
    sampling = actor.sampling
    greedy = Actor(actor.backend, actor.template, replace(sampling, temperature=0.0),
                   refine_sampling=replace(sampling, temperature=t.refine_temperature) if t.refine_temperature > 0 else None)
    sampler = Actor(actor.backend, actor.template, replace(sampling, temperature=t.temperature))
    problems = _problems(run, t)
    difficulty = {p.id: p.difficulty for p in problems}
    batch, rounds, ks, hard = run.cfg.actor.batch_size, t.max_rounds, list(t.ks), [str(level) for level in t.hard_levels]
    env = lambda refinements: run.env_config(action_unit="solution", max_refinements=refinements)  # noqa: E731
    critics = run.critics(t.critics, actor)
    tracker = run.tracker
    metrics: dict[str, Any] = {"problems": len(problems), "refine_temperature": t.refine_temperature, "refine": {},
                               "scaling": {}, "budget": {}}

    # 1. greedy, critique -> refine for 0..R rounds
    for name, critic in critics.items():
        records = rollout(problems, greedy, critic, env(rounds), batch_size=batch, seed=run.seed)
        metrics["refine"][name] = refinement_summary(records, rounds)
        tracker.table(f"episodes/greedy/{name}", EPISODE_COLUMNS, episode_rows(records[: t.table_episodes]))

    # 2. samples per problem, drawn once: the first k_max for every method, and more for plain majority voting
    # to be given as many tokens as a critic method spends (the critic's tokens count too)
    budget_k = max(t.k_max, t.budget_k_max)
    drawn = rollout(replicate(problems, budget_k), sampler, NullCritic(), env(0), batch_size=batch, seed=run.seed)
    first = {r.problem.id: r for r in drawn}
    plain_budget = samples_of(drawn, budget_k)
    metrics["scaling"]["no critic"] = scaling_curves(samples_of(drawn, t.k_max), difficulty, ks, ["majority", "pass@k"])

    # 3. each critic on the same samples: select, and refine then vote
    for name, critic in critics.items():
        if name == "none":
            continue
        records = rollout(replicate(problems, t.k_max), PresampledActor(first, sampler), critic, env(t.sample_rounds),
                          batch_size=batch, seed=run.seed)
        reviewed, refined = samples_of(records, t.k_max, rounds=0), samples_of(records, t.k_max, rounds=t.sample_rounds)
        curves = scaling_curves(reviewed, difficulty, ks, ["critic_filtered_majority", "best_of_k"])
        curves["refine_then_majority"] = scaling_curves(refined, difficulty, ks, ["majority"])["majority"]
        metrics["scaling"][name] = curves
        metrics["budget"][name] = {f"{method}@k={k}": _budget(method, samples, k, curves, plain_budget, hard, difficulty)
                                   for method, samples in (("critic_filtered_majority", reviewed),
                                                           ("refine_then_majority", refined)) for k in ks}
        tracker.table(f"episodes/sampled/{name}", EPISODE_COLUMNS, episode_rows(records[: t.table_episodes]))

    labels = {n: run.label(n) for n in critics}
    tables = test_time_tables(metrics, labels, ks, rounds, hard)
    for md in tables.values():
        print(md + "\n")
    plots = test_time_plots(metrics, labels, ks, run.dir / "results")
    tracker.log(test_time_scalars(metrics))
    for key, path in plots.items():
        tracker.image(f"plots/{key}", path)
    where = tracker.directory
    run.write_results("eval_test_time", {"test_time": t, "actor": run.cfg.actor}, metrics, tables)
    return {"problems": len(problems), "plots": {k: str(v) for k, v in plots.items()},
            "wandb_dir": str(where) if where else None,
            "refine_overall": {n: m["overall"] for n, m in metrics["refine"].items()}}


def _budget(method: str, samples: dict, k: int, curves: dict, plain: dict, hard: list[str],
            difficulty: dict) -> dict[str, Any]:
    """A critic method at k against plain majority voting given the same tokens (a likelihood-gated critic also
    reads the lines it scores: counted once more as if generated)."""
    spent, scored = curves[method][f"k={k}"]["mean_tokens"], curves[method][f"k={k}"]["mean_scored_tokens"]
    picked = [choose("majority" if method == "refine_then_majority" else method, s, k) for pid, s in samples.items()
              if not hard or str(difficulty[pid]) in hard]
    return {"accuracy_hard": round(sum(picked) / len(picked), 4) if picked else None,
            "majority_same_tokens_hard": budget_matched(plain, spent, hard or None, difficulty),
            "tokens": spent, "scored_tokens": scored,
            "majority_same_tokens_incl_scored_hard": budget_matched(plain, spent + scored, hard or None, difficulty)}
