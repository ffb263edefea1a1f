"""The AutoMathCritique stages: critique data, critic training, critic evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.checkpoints import SHIPPED_CRITIC, actor_checkpoint, copy_checkpoint
from pipeline.config import ConfigError
from pipeline.factory import make_actor, make_critic, trained_critic_config, trained_critics

TRAINED_CRITIC_LABELS = {"model": "trained critic", "model_checks": "trained critic's computations, compared in code",
                         "model_likelihood": "trained critic, likelihood-gated"}

__all__ = ["critique_data", "critic_training", "eval_critic"]


def _data_problems(cfg: DictConfig, total: int) -> list:
    from envs import SyntheticArithmetic, load_gsm8k

    a = cfg.autocritique
    if a.dataset == "synthetic":
        p = cfg.problems if cfg.problems.name == "synthetic" else None
        return SyntheticArithmetic(size=total, min_steps=int(p.min_steps) if p else 1,
                                   max_steps=int(p.max_steps) if p else 8, max_operand=int(p.max_operand) if p else 30,
                                   max_value=int(p.max_value) if p else 499, split="train",
                                   seed=int(cfg.seed) + 1)[:]
    if a.dataset == "gsm8k":
        return list(load_gsm8k(a.get("path"), split="train", limit=total))
    raise ConfigError(f"unknown autocritique.dataset {a.dataset!r}; valid: synthetic, gsm8k")


def critique_data(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Stages 1-3 over training problems; writes ``critique_data/critiques.jsonl`` and ``stats.json``."""
    from autocritique import AutoCritiqueConfig, build_critique_dataset, write_dataset

    settings = OmegaConf.to_container(cfg.autocritique, resolve=True)
    settings.pop("dataset")
    settings.pop("path", None)
    settings.setdefault("seed", int(cfg.seed))
    try:
        config = AutoCritiqueConfig.from_dict(settings)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    actor = make_actor(cfg.actor, actor_checkpoint(cfg), seed=int(cfg.seed))
    rows, stats = build_critique_dataset(_data_problems(cfg, config.total_problems), actor, config)
    path = write_dataset(run_dir / "critique_data", rows, stats)
    print(f"[critique_data] responses {dict(stats['responses'])}; kept {dict(stats['kept'])}; "
          f"dropped {dict(stats['dropped'])} -> {path}")
    return {"path": str(path), **{k: v for k, v in stats.items() if k != "config"}}


def critic_training(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The critique model: the shipped tiny critic, or one trained on this run's critique data."""
    from autocritique import dataset_provenance, read_dataset
    from trainers.critic_sft import CriticSFTConfig, train_tiny_critic

    c = cfg.critic_training
    out = run_dir / "critic"
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
    data = run_dir / "critique_data" / "critiques.jsonl"
    provenance = dataset_provenance(data) if data.exists() else None
    if provenance is None:
        raise ConfigError(f"no critique data (critiques.jsonl and stats.json) at {data.parent}: "
                          "run the critique_data stage first")
    try:
        recipe = CriticSFTConfig.from_dict({**OmegaConf.to_container(c.recipe, resolve=True), "init": c.init})
    except ValueError as err:
        raise ConfigError(str(err)) from err
    rows = read_dataset(data)
    print(f"[critic_training] init={c.init}: {recipe.train_steps} steps of {recipe.batch_size} on {len(rows)} critiques")
    summary = train_tiny_critic(recipe, rows, out, actor_checkpoint=actor_checkpoint(cfg),
                                data=provenance)
    return {"init": c.init, "checkpoint": str(out), "train_seconds": summary["train_seconds"],
            "train_loss": summary["train_loss"], "examples": summary["examples"]}


def eval_critic(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Verdict and location scores of each critic on natural, injected and greedy solutions to held-out problems."""
    from critics import ModelCritic, NullCritic, OracleCritic, RandomStepCritic
    from critics.self_check import SelfCheckCritic
    from envs import SyntheticArithmetic
    from evaluation import write_results
    from evaluation.critic_eval import collect_eval_solutions, format_critic_table, score_critic

    e = cfg.eval_critic
    actor = make_actor(cfg.actor, actor_checkpoint(cfg), seed=int(cfg.seed))
    p = cfg.problems
    if p.name != "synthetic":
        raise ConfigError("eval_critic runs on synthetic held-out problems (problems=synthetic)")
    levels = int(p.max_steps) - int(p.min_steps) + 1
    problems = SyntheticArithmetic(size=int(e.problems_per_level) * levels, min_steps=int(p.min_steps),
                                   max_steps=int(p.max_steps), max_operand=int(p.max_operand),
                                   max_value=int(p.max_value), split="test", seed=int(cfg.seed) + 7)[:]
    sets = collect_eval_solutions(problems, actor, temperature=float(e.temperature), seed=int(cfg.seed),
                                  samples_per_problem=int(e.samples_per_problem))
    critics: dict[str, Any] = {}
    trained = trained_critics(cfg, [n for n in e.critics if n in TRAINED_CRITIC_LABELS])
    for name in e.critics:
        if name in trained:
            critics[TRAINED_CRITIC_LABELS[name]] = trained[name]
        elif name == "self":
            critics["self-check (actor recomputes each step)"] = SelfCheckCritic(actor.backend, actor.template)
        elif name == "self_reflection":
            critics["self-reflection (actor asked for a critique)"] = ModelCritic(actor.backend, actor.template,
                                                                                 max_new_tokens=160, generation="whole")
        elif name == "oracle":
            critics["oracle (reference-aware)"] = OracleCritic()
        elif name == "always_correct":
            critics["always correct"] = NullCritic()
        elif name == "random":
            critics["random step"] = RandomStepCritic(seed=int(cfg.seed))
        else:
            raise ConfigError(f"unknown eval_critic critic {name!r}; valid: {', '.join(TRAINED_CRITIC_LABELS)}, "
                              "self, self_reflection, oracle, always_correct, random")
    for label, path in (e.get("extra_models") or {}).items():
        critics[str(label)] = make_critic(trained_critic_config(cfg, "model", str(path)))
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
    md = format_critic_table(scores, title=f"Critics on held-out problems ({len(problems)} problems, 1-{levels} steps)")
    print(md)
    sizes = {k: {"n": len(v), "wrong": sum(s.wrong for s in v)} for k, v in sets.items()}
    write_results(run_dir / "results", "eval_critic", {"eval_critic": OmegaConf.to_container(e, resolve=True),
                                                       "sets": sizes},
                  {"scores": scores, "natural_by_level": by_level}, {"critics": md})
    return {"sets": sizes, "scores": {k: {s: v[s]["balanced_accuracy"] for s in sets} for k, v in scores.items()}}


def calibrate_critic(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Choose ``critic.accept_probability`` for likelihood-gated verdicts: sweep it on the actor's natural and
    greedy solutions to *training-split* problems (never the held-out ones the evaluations use) and report the
    balanced accuracy of each bound beside the critic's own verdicts."""
    from envs import SyntheticArithmetic
    from evaluation import write_results
    from evaluation.critic_eval import collect_eval_solutions, score_critic

    c, p = cfg.calibrate_critic, cfg.problems
    if p.name != "synthetic":
        raise ConfigError("calibrate_critic runs on synthetic training-split problems (problems=synthetic)")
    bounds = [float(x) for x in c.accept_probabilities]
    if not bounds or not all(0 < b <= 1 for b in bounds):
        raise ConfigError(f"calibrate_critic.accept_probabilities must be in (0, 1], got {bounds}")
    actor = make_actor(cfg.actor, actor_checkpoint(cfg), seed=int(cfg.seed))
    problems = []
    for level in c.levels:
        problems += SyntheticArithmetic(size=int(c.problems_per_level), min_steps=int(level), max_steps=int(level),
                                        max_operand=int(p.max_operand), max_value=int(p.max_value), split="train",
                                        seed=int(cfg.seed) + 11 + int(level))[:]
    sets = collect_eval_solutions(problems, actor, temperature=float(cfg.eval_critic.temperature), seed=int(cfg.seed),
                                  samples_per_problem=int(c.samples_per_problem))
    solutions = sets["natural"] + sets["greedy"]
    trained = trained_critics(cfg, ["model", "model_likelihood"])
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
    lines = [f"**Likelihood-gated verdicts on training-split problems, levels {', '.join(map(str, c.levels))} "
             f"({len(solutions)} natural and greedy solutions, {sum(s.wrong for s in solutions)} wrong)**", "",
             "| trained critic | bal. acc. | wrong caught | right passed | located | tokens / solution: generated, "
             "scored |", "|---|---|---|---|---|---|"]
    for label, r in rows.items():
        cells = [r[k] for k in ("balanced_accuracy", "recall_wrong", "recall_right", "location_accuracy")]
        lines.append(f"| {label} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells)
                     + f" | {r['generated_tokens_per_solution']:.1f}, {r['scored_tokens_per_solution']:.1f} |")
    lines += ["", f"Best balanced accuracy: accept_probability={best:g} (configured: {configured:g})"]
    md = "\n".join(lines)
    print(md)
    write_results(run_dir / "results", "calibrate_critic", {"calibrate_critic": OmegaConf.to_container(c, resolve=True)},
                  {"rows": rows, "best_accept_probability": best, "configured_accept_probability": configured},
                  {"calibration": md})
    return {"best_accept_probability": best,
            "balanced_accuracy": {k: v["balanced_accuracy"] for k, v in rows.items()}}


def _by_level(critiques: list, solutions: list) -> dict[str, Any]:
    """Balanced accuracy by number of steps."""
    from evaluation.critic_eval import score_critic

    out = {}
    for level in sorted({s.problem.difficulty for s in solutions}):
        pairs = [(c, s) for c, s in zip(critiques, solutions) if s.problem.difficulty == level]
        out[str(level)] = score_critic([c for c, _ in pairs], [s for _, s in pairs])["balanced_accuracy"]
    return out
