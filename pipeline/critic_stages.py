"""The AutoMathCritique stages: critique data, critic training, critic evaluation, and the gated critic's bound."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from autocritique.pipeline import build_critique_dataset, dataset_provenance, read_dataset, write_dataset
from critics.model_critic import ModelCritic
from critics.registry import CRITICS
from envs.datasets import load_gsm8k
from envs.registry import ProblemsConfig, problems_for
from evaluation.critic_eval import collect_eval_solutions, score_critic
from evaluation.report import calibration_table, format_critic_table
from pipeline.checkpoints import SHIPPED_CRITIC, copy_checkpoint
from pipeline.config import ConfigError
from pipeline.context import Run
from pipeline.schema import CalibrateCriticConfig, CriticTrainingConfig, CritiqueDataConfig, EvalCriticConfig
from trainers.critic_sft import train_tiny_critic

__all__ = ["calibrate_critic", "critic_training", "critique_data", "eval_critic"]


def _data_problems(run: Run, a: CritiqueDataConfig, total: int) -> list:
    if a.dataset == "synthetic":
        if not run.generated:
            print(f"[critique_data] autocritique.dataset=synthetic: synthetic problems of the default generator, not "
                  f"problems={run.cfg.problems.name} (autocritique=gsm8k builds critiques of GSM8K)")
            return problems_for(ProblemsConfig(), "critique_data", run.seed, "train", total)
        return run.problems("critique_data", "train", total)
    if a.dataset == "gsm8k":
        return list(load_gsm8k(a.path, split="train", limit=total))
    raise ConfigError(f"unknown autocritique.dataset {a.dataset!r}; valid: synthetic, gsm8k")


def critique_data(run: Run, a: CritiqueDataConfig) -> dict[str, Any]:
    """Stages 1-3 over training problems; writes ``critique_data/critiques.jsonl`` and ``stats.json``."""
    try:
        config = a.pipeline_config(run.seed)
    except ValueError as err:
        raise ConfigError(f"autocritique: {err}") from err
    rows, stats = build_critique_dataset(_data_problems(run, a, config.total_problems), run.actor(), config,
                                         env=run.env_config(action_unit="solution"))
    path = write_dataset(run.dir / "critique_data", rows, stats)
    print(f"[critique_data] responses {dict(stats['responses'])}; kept {dict(stats['kept'])}; "
          f"dropped {dict(stats['dropped'])} -> {path}")
    return {"path": str(path), **{k: v for k, v in stats.items() if k != "config"}}


def critic_training(run: Run, c: CriticTrainingConfig) -> dict[str, Any]:
    """The critique model: the shipped tiny critic, or one trained on this run's critique data."""
    out = run.dir / "critic"
    if c.init == "shipped":
        if not (SHIPPED_CRITIC / "model.safetensors").exists():
            raise ConfigError(f"critic_training.init=shipped but there is no checkpoint at {SHIPPED_CRITIC}; "
                              "use critic_training.init=actor")
        recipe = copy_checkpoint(SHIPPED_CRITIC, out)
        print(f"[critic_training] the shipped critic {SHIPPED_CRITIC} (trained {recipe['train_seconds']} s on "
              f"{recipe['examples']} examples, loss {recipe['train_loss']})")
        return {"init": "shipped", "checkpoint": str(out), "train_loss": recipe["train_loss"]}
    if c.init not in ("actor", "scratch", "checkpoint"):
        raise ConfigError(f"critic_training.init must be shipped, actor, scratch or checkpoint, got {c.init!r}")
    data = run.dir / "critique_data" / "critiques.jsonl"
    provenance = dataset_provenance(data) if data.exists() else None
    if provenance is None:
        raise ConfigError(f"no critique data (critiques.jsonl and stats.json) at {data.parent}: "
                          "run the critique_data stage first")
    try:
        recipe = replace(c.recipe, init=c.init)
    except ValueError as err:
        raise ConfigError(f"critic_training.recipe: {err}") from err
    rows = read_dataset(data)
    print(f"[critic_training] init={c.init}: {recipe.train_steps} steps of {recipe.batch_size} on {len(rows)} critiques")
    summary = train_tiny_critic(recipe, rows, out, actor_checkpoint=run.actor_checkpoint, data=provenance)
    return {"init": c.init, "checkpoint": str(out), "train_seconds": summary["train_seconds"],
            "train_loss": summary["train_loss"], "examples": summary["examples"]}


def eval_critic(run: Run, e: EvalCriticConfig) -> dict[str, Any]:
    """Verdict and location scores of each critic on natural, injected and greedy solutions to held-out problems."""
    run.require_generated("eval_critic")
    actor = run.actor()
    problems = run.problems("eval_critic", "test", e.problems_per_level * len(run.levels))
    sets = collect_eval_solutions(problems, actor, temperature=e.temperature, seed=run.seed,
                                  samples_per_problem=e.samples_per_problem, env=run.env_config(action_unit="solution"))
    critics = {CRITICS[n].about: c for n, c in run.critics(e.critics, actor).items()}
    for label, path in e.extra_models.items():
        critics[label] = run.critics(["model"], model=path)["model"]
    scores: dict[str, dict[str, Any]] = {}
    by_level: dict[str, dict[str, Any]] = {}
    for label, critic in critics.items():
        scores[label] = {}
        for subset, solutions in sets.items():
            critiques = critic.critique_batch([s.problem for s in solutions], [s.steps for s in solutions])
            scores[label][subset] = score_critic(critiques, solutions)
            if subset == "natural":
                by_level[label] = _by_level(critiques, solutions)
        if isinstance(critic, ModelCritic):
            scores[label]["parse_failures"] = critic.parse_failures
    md = format_critic_table(scores, title=f"Critics on held-out problems ({len(problems)} problems, "
                                           f"{run.levels[0]}-{run.levels[-1]} steps)")
    print(md)
    sizes = {k: {"n": len(v), "wrong": sum(s.wrong for s in v)} for k, v in sets.items()}
    run.write_results("eval_critic", {"eval_critic": e, "sets": sizes}, {"scores": scores, "natural_by_level": by_level},
                      {"critics": md})
    return {"sets": sizes, "scores": {k: {s: v[s]["balanced_accuracy"] for s in sets} for k, v in scores.items()}}


def calibrate_critic(run: Run, c: CalibrateCriticConfig) -> dict[str, Any]:
    """Choose ``critic.accept_probability`` for likelihood-gated verdicts: sweep it on the actor's natural and
    greedy solutions to *training-split* problems (never the held-out ones the evaluations use) and report the
    balanced accuracy of each bound beside the critic's own verdicts."""
    bounds = list(c.accept_probabilities)
    if not bounds or not all(0 < b <= 1 for b in bounds):
        raise ConfigError(f"calibrate_critic.accept_probabilities must be in (0, 1], got {bounds}")
    run.require_generated("calibrate_critic")
    actor = run.actor()
    problems = run.problems("calibrate", "train", c.problems_per_level, levels=c.levels)
    sets = collect_eval_solutions(problems, actor, temperature=run.cfg.eval_critic.temperature, seed=run.seed,
                                  samples_per_problem=c.samples_per_problem, env=run.env_config(action_unit="solution"))
    solutions = sets["natural"] + sets["greedy"]
    trained = run.critics(["model", "model_likelihood"])
    configured = trained["model_likelihood"].accept_probability
    rows: dict[str, dict[str, Any]] = {}
    for label, critic, bound in [("own verdicts", trained["model"], None)] + [
            (f"accept_probability={b:g}", trained["model_likelihood"].variant(accept_probability=b), b) for b in bounds]:
        critiques = critic.critique_batch([s.problem for s in solutions], [s.steps for s in solutions])
        rows[label] = {**score_critic(critiques, solutions), "accept_probability": bound,
                       **{f"{kind}_tokens_per_solution": round(sum(x.extras.get(key, 0) for x in critiques)
                                                               / len(solutions), 1)
                          for kind, key in (("generated", "tokens"), ("scored", "scored_tokens"))}}
    best = max(bounds, key=lambda b: rows[f"accept_probability={b:g}"]["balanced_accuracy"] or 0.0)
    md = calibration_table(rows, c.levels, len(solutions), sum(s.wrong for s in solutions), best, configured)
    print(md)
    run.write_results("calibrate_critic", {"calibrate_critic": c},
                      {"rows": rows, "best_accept_probability": best, "configured_accept_probability": configured},
                      {"calibration": md})
    return {"best_accept_probability": best,
            "balanced_accuracy": {k: v["balanced_accuracy"] for k, v in rows.items()}}


def _by_level(critiques: list, solutions: list) -> dict[str, Any]:
    """Balanced accuracy by number of steps."""
    out = {}
    for level in sorted({s.problem.difficulty for s in solutions}):
        pairs = [(c, s) for c, s in zip(critiques, solutions) if s.problem.difficulty == level]
        out[str(level)] = score_critic([c for c, _ in pairs], [s for _, s in pairs])["balanced_accuracy"]
    return out
