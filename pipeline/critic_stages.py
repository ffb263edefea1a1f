"""The AutoMathCritique stages: critique data, critic training, critic evaluation, and the gated critic's bound."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from agents.actor import Actor, backend_template
from agents.backends import load_backend
from autocritique.annotate import Annotator, LMAnnotator, OracleAnnotator
from autocritique.pipeline import (
    build_critique_dataset,
    dataset_provenance,
    plan_sources,
    read_dataset,
    write_dataset,
    write_paper_rows,
)
from core.problem import Problem
from core.registry import RegistryError
from core.sampling import SamplingParams
from critics.model_critic import ModelCritic
from critics.registry import CRITICS
from envs.registry import PROBLEM_SOURCES, ProblemsConfig, problems_for
from evaluation.critic_eval import collect_eval_solutions, read_processbench, score_critic, score_processbench
from evaluation.report import calibration_table, format_critic_table, processbench_table
from evaluation.tracking import CRITIQUE_COLUMNS, critique_rows
from pipeline.checkpoints import SHIPPED_CRITIC, copy_checkpoint, repo_path
from pipeline.config import ConfigError
from pipeline.context import Run
from pipeline.schema import CalibrateCriticConfig, CriticTrainingConfig, CritiqueDataConfig, EvalCriticConfig
from trainers.critic_sft import train_hf_critic, train_tiny_critic

__all__ = ["calibrate_critic", "critic_training", "critique_data", "eval_critic"]


def _data_problems(run: Run, a: CritiqueDataConfig, total: int) -> list:
    """Training problems of the run's source, or of ``autocritique.dataset`` when it names another."""
    if a.dataset is None or a.dataset == run.cfg.problems.name and a.path is None:
        return run.problems("critique_data", "train", total)
    try:
        PROBLEM_SOURCES[a.dataset]
    except RegistryError as err:
        raise ConfigError(f"autocritique.dataset: {err}") from err
    source = ProblemsConfig(name=a.dataset, path=a.path, min_steps=run.cfg.problems.min_steps,
                            max_steps=run.cfg.problems.max_steps)
    print(f"[critique_data] autocritique.dataset={a.dataset}: training problems of {a.dataset}, not of "
          f"problems={run.cfg.problems.name}")
    return problems_for(source, "critique_data", run.seed, "train", total)


def _annotator(run: Run, a: CritiqueDataConfig, actor: Actor) -> Annotator:
    if a.annotator == "oracle":
        return OracleAnnotator()
    if a.annotator != "lm":
        raise ConfigError(f"autocritique.annotator must be oracle or lm, got {a.annotator!r}")
    if a.annotator_model is None and a.annotator_backend == actor.backend.name:
        backend = actor.backend  # the actor's own model annotates (a weak stand-in for the paper's GPT-4o)
    else:
        model = a.annotator_model or run.actor_checkpoint
        try:
            backend = load_backend(a.annotator_backend, str(model), batch_size=run.cfg.actor.batch_size,
                                   threads=run.cfg.actor.threads, base_url=a.annotator_base_url,
                                   served_model=a.annotator_served_model)
        except (RegistryError, ValueError) as err:
            raise ConfigError(f"autocritique.annotator_backend: {err}") from err
    # the template renders the request: a chat turn for an instruct model, the text itself otherwise
    return LMAnnotator(backend, SamplingParams(max_new_tokens=a.annotator_max_new_tokens, temperature=0.0),
                       template=backend_template(backend))


def critique_data(run: Run, a: CritiqueDataConfig) -> dict[str, Any]:
    """Stages 1-3 over training problems; writes ``critique_data/critiques.jsonl`` and ``stats.json``."""
    try:
        config = a.pipeline_config(run.seed)
    except ValueError as err:
        raise ConfigError(f"autocritique: {err}") from err
    problems = _data_problems(run, a, config.total_problems)
    for note in plan_sources(problems, config):
        print(f"[critique_data] {note}")
    actor = run.actor()
    rows, stats = build_critique_dataset(problems, actor, config, annotator=_annotator(run, a, actor),
                                         env=run.env_config(action_unit="solution"))
    path = write_dataset(run.dir / "critique_data", rows, stats)
    write_paper_rows(run.dir / "critique_data", rows)
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
    if c.init not in ("actor", "scratch", "checkpoint", "hf"):
        raise ConfigError(f"critic_training.init must be shipped, actor, scratch, checkpoint or hf, got {c.init!r}")
    if c.init != "hf":
        try:
            recipe = replace(c.recipe, init=c.init,
                             checkpoint=str(repo_path(c.recipe.checkpoint)) if c.recipe.checkpoint else None)
        except ValueError as err:
            raise ConfigError(f"critic_training.recipe: {err}") from err
        _check_expansion(recipe, run.actor_checkpoint)
    data = run.dir / "critique_data" / "critiques.jsonl"
    provenance = dataset_provenance(data) if data.exists() else None
    if c.init == "hf" and c.hf.only_rows:
        provenance = {"rows": c.hf.rows}
    elif provenance is None:
        raise ConfigError(f"no critique data (critiques.jsonl and stats.json) at {data.parent}: "
                          "run the critique_data stage first")
    if c.init == "hf":
        return _train_hf_critic(run, c, [] if c.hf.only_rows else read_dataset(data), provenance, out)
    rows = read_dataset(data)
    start = f" from {recipe.checkpoint}" if c.init == "checkpoint" else ""
    if recipe.expand_layers:
        start += f", {recipe.expand_layers} layers added (pass-through copies)"
    print(f"[critic_training] init={c.init}{start}: {recipe.train_steps} steps of {recipe.batch_size} on {len(rows)} "
          "critiques")
    summary = train_tiny_critic(recipe, rows, out, actor_checkpoint=run.actor_checkpoint, data=provenance)
    return {"init": c.init, "checkpoint": str(out), "train_seconds": summary["train_seconds"],
            "train_loss": summary["train_loss"], "examples": summary["examples"],
            "expand_layers": recipe.expand_layers}


def _check_expansion(recipe, actor_checkpoint) -> None:
    """``expand_layers`` must split the starting model's layers into equal groups; its layer count is known only
    once the start is chosen, so this is checked here, before any data is read, rather than with the config."""
    if not recipe.expand_layers:
        return
    if recipe.init == "scratch":
        layers, what = recipe.model.num_hidden_layers, "critic_training.recipe.model.num_hidden_layers"
    else:
        from transformers import AutoConfig

        start = actor_checkpoint if recipe.init == "actor" else recipe.checkpoint
        if start is None:
            return  # train_tiny_critic names the missing start
        layers, what = AutoConfig.from_pretrained(start).num_hidden_layers, f"the layers of {start}"
    if layers % recipe.expand_layers:
        divisors = ", ".join(str(d) for d in range(1, layers + 1) if layers % d == 0)
        raise ConfigError(f"critic_training.recipe.expand_layers={recipe.expand_layers} must divide {what} "
                          f"({layers}) into equal groups (one of {divisors})")


def _train_hf_critic(run: Run, c: CriticTrainingConfig, rows: list, provenance: dict, out) -> dict[str, Any]:
    base = c.hf.base_model or run.actor_checkpoint
    if base is None:
        raise ConfigError("critic_training.init=hf needs critic_training.hf.base_model (or actor.model)")
    kind = "LoRA" if c.hf.lora else "full fine-tuning"
    print(f"[critic_training] init=hf: {kind} of {base}, {c.hf.train_steps} steps of {c.hf.batch_size} on "
          f"{len(rows)} critiques" + (f" and the rows of {c.hf.rows}" if c.hf.rows else ""))
    try:
        summary = train_hf_critic(c.hf, rows, str(base), out, data=provenance)
    except (ValueError, OSError) as err:
        raise ConfigError(f"critic_training.hf: {err}") from err
    return {"init": "hf", "checkpoint": str(out), "lora": c.hf.lora, "train_seconds": summary["train_seconds"],
            "train_loss": summary["train_loss"], "examples": summary["examples"]}


def eval_critic(run: Run, e: EvalCriticConfig) -> dict[str, Any]:
    """Verdict and location scores of each critic on natural, injected and greedy solutions to held-out problems
    of the configured source, and on a ProcessBench-format file when one is given."""
    if e.processbench_only and not e.processbench:
        raise ConfigError("eval_critic.processbench_only needs eval_critic.processbench=<a JSONL file>")
    actor = run.actor() if any(CRITICS[n].needs_actor for n in e.critics) or not e.processbench_only else None
    critics = {CRITICS[n].about: c for n, c in run.critics(e.critics, actor).items()}
    for label, path in e.extra_models.items():
        critics[label] = run.critics(["model"], model=path)["model"]
    metrics: dict[str, Any] = {}
    tables: dict[str, str] = {}
    summary: dict[str, Any] = {}
    if not e.processbench_only:
        metrics, tables["critics"], summary = _sampled_sets(run, e, actor, critics)
    if e.processbench:
        blind = {CRITICS[n].about for n in e.critics if CRITICS[n].needs_reference}
        metrics["processbench"], tables["processbench"] = _processbench(e.processbench, critics, blind)
        summary["processbench_f1"] = {k: v.get("f1") for k, v in metrics["processbench"].items()}
    for md in tables.values():
        print(md)
    run.write_results("eval_critic", {"eval_critic": e, "sets": summary.get("sets")}, metrics, tables)
    return summary


def _sampled_sets(run: Run, e: EvalCriticConfig, actor: Actor, critics: dict) -> tuple[dict, str, dict]:
    if run.generated:  # every level is equally likely in a generated set
        problems = run.problems("eval_critic", "test", e.problems_per_level * len(run.levels))
    else:  # a file's rows are not: a seeded sample of each level
        problems = run.problems("eval_critic", "test", e.problems_per_level, levels=run.levels)
    sets = collect_eval_solutions(problems, actor, temperature=e.temperature, seed=run.seed,
                                  samples_per_problem=e.samples_per_problem, env=run.env_config(action_unit="solution"))
    scores: dict[str, dict[str, Any]] = {}
    by_level: dict[str, dict[str, Any]] = {}
    for label, critic in critics.items():
        scores[label] = {}
        for subset, solutions in sets.items():
            critiques = critic.critique_batch([s.problem for s in solutions], [s.steps for s in solutions])
            scores[label][subset] = score_critic(critiques, solutions)
            run.tracker.table(f"episodes/{label}/{subset}", CRITIQUE_COLUMNS,
                              critique_rows(solutions[: e.table_episodes], critiques[: e.table_episodes]))
            if subset == "natural":
                by_level[label] = _by_level(critiques, solutions)
        if isinstance(critic, ModelCritic):
            scores[label]["parse_failures"] = critic.parse_failures
    md = format_critic_table(scores, title=f"Critics on held-out {run.cfg.problems.name} problems ({len(problems)} "
                                           f"problems, difficulty {run.levels[0]}-{run.levels[-1]})")
    sizes = {k: {"n": len(v), "wrong": sum(s.wrong for s in v)} for k, v in sets.items()}
    return ({"scores": scores, "natural_by_level": by_level}, md,
            {"sets": sizes, "scores": {k: {s: v[s]["balanced_accuracy"] for s in sets} for k, v in scores.items()}})


def _processbench(path: str, critics: dict, blind: set[str]) -> tuple[dict[str, Any], str]:
    """Every critic on a step-labelled file; one that needs what the rows lack (``blind``: a gold answer and a
    reference solution) is reported as not run."""
    try:
        rows = read_processbench(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"eval_critic.processbench: {err}") from err
    problems = [Problem(id=r.id, question=r.problem, answer="", source="processbench") for r in rows]
    scores: dict[str, Any] = {}
    for label, critic in critics.items():
        if label in blind:
            scores[label] = {"error": "needs a gold answer and a reference solution, which the rows lack"}
            continue
        try:
            critiques = critic.critique_batch(problems, [list(r.steps) for r in rows])
        except (ValueError, KeyError) as err:
            scores[label] = {"error": f"{type(err).__name__}: {err}"[:160]}
            continue
        scores[label] = score_processbench(critiques, rows)
    erroneous = sum(r.label != -1 for r in rows)
    return scores, processbench_table(scores, f"Step-labelled solutions of {Path(path).name} ({len(rows)} solutions, "
                                              f"{erroneous} with a wrong step)")


def calibrate_critic(run: Run, c: CalibrateCriticConfig) -> dict[str, Any]:
    """Choose ``critic.accept_probability`` for likelihood-gated verdicts: sweep it on the actor's natural and
    greedy solutions to *training-split* problems (never the held-out ones the evaluations use) and report the
    balanced accuracy of each bound beside the critic's own verdicts."""
    bounds = list(c.accept_probabilities)
    if not bounds or not all(0 < b <= 1 for b in bounds):
        raise ConfigError(f"calibrate_critic.accept_probabilities must be in (0, 1], got {bounds}")
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
