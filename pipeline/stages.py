"""The stages ``train.py`` runs, and the runner that caches each finished stage in the run folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gymnasium.utils.env_checker import check_env
from omegaconf import DictConfig, OmegaConf

from agents.scripted import ScriptedActor
from critics import NullCritic
from envs import SyntheticArithmetic, run_episode
from pipeline.checkpoints import SHIPPED_ACTOR, actor_checkpoint, copy_checkpoint, critic_checkpoint
from pipeline.config import ConfigError
from pipeline.critic_stages import calibrate_critic, critic_training, critique_data, eval_critic
from pipeline.factory import make_actor, make_critic, make_env, make_problem_source
from pipeline.self_improve_stages import self_improve
from pipeline.test_time_stages import eval_test_time
from storage import atomic_write_json, read_json

__all__ = ["STAGES", "Stage", "run_stages"]


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[DictConfig, Path], dict[str, Any]]
    cached: bool  # a finished run is reused until asked to rerun (expensive stages: training)
    about: str


def _env_check(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """gymnasium's check_env on the configured env, then scripted episodes through it."""
    cfg = _scripted(cfg)
    critic = configured_critic(cfg)
    env = make_env(cfg, critic=critic)
    check_env(env, skip_render_check=True)
    n = int(cfg.env_check.episodes)
    # Scripted episodes need reference programs: use synthetic problems for them whatever `problems` is.
    problems = make_problem_source(cfg.problems) if cfg.problems.name == "synthetic" else SyntheticArithmetic(
        size=n, seed=int(cfg.seed), split="test")
    results: dict[str, Any] = {"check_env": "passed", "critic": critic.name, "episodes": n}
    for label, actor, episode_critic in (
        ("correct_solutions", ScriptedActor(), critic),
        ("one_error_no_critic", ScriptedActor(error_step=2, seed=int(cfg.seed)), NullCritic()),
        (f"one_error_with_{critic.name}", ScriptedActor(error_step=2, seed=int(cfg.seed)), critic),
    ):
        episode_env = make_env(cfg, problems=problems, critic=episode_critic)
        records = [run_episode(episode_env, actor, options={"index": i % len(problems)}) for i in range(n)]
        results[label] = {
            "accuracy": sum(r.correct for r in records) / n,
            "mean_refinement_rounds": sum(r.refinement_rounds for r in records) / n,
        }
    return results


def _demo(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Episodes shown step by step: a scripted actor with one mistake, and the configured critic."""
    cfg = _scripted(cfg)
    env = make_env(cfg, problems=SyntheticArithmetic(size=max(8, int(cfg.demo.episodes)), min_steps=3,
                                                      max_steps=5, seed=int(cfg.seed), split="test")
                   if cfg.problems.name != "synthetic" else None, critic=configured_critic(cfg))
    actor = ScriptedActor(error_step=cfg.demo.error_step, error_kind=cfg.demo.error_kind, seed=int(cfg.seed))
    shown = []
    for episode in range(int(cfg.demo.episodes)):
        observation, info = env.reset(seed=int(cfg.seed) + episode)
        print(f"\n--- episode {episode + 1}: {info['problem_id']} (difficulty {info['difficulty']}) ---")
        print(f"problem : {observation['problem']}")
        while True:
            action = actor.act(observation, info)
            observation, reward, terminated, truncated, info = env.step(action)
            print(f"actor   : {action}")
            if info["refined"]:
                print(f"critic  : {observation['feedback']}")
                print(f"          (solution cut back to {len(info['record'].steps)} step(s); round "
                      f"{info['refinement_rounds']})")
            if terminated or truncated:
                v = info["record"].verification
                print(f"verifier: {v.reason if v else 'no answer'} -> reward {reward}")
                break
        shown.append(info["record"].to_dict())
    atomic_write_json(run_dir / "demo_episodes.json", shown)
    return {"episodes": len(shown), "correct": sum(e["correct"] for e in shown)}


def _scripted(cfg: DictConfig) -> DictConfig:
    """The scripted actor writes one line per action."""
    cfg = cfg.copy()
    cfg.env.action_unit = "step"
    return cfg


def configured_critic(cfg: DictConfig, actor=None):
    """The configured critic; ``self`` runs on the actor's model, ``model`` on the run's critique model."""
    if cfg.critic.name == "self" and actor is None:
        actor = make_actor(cfg.actor, actor_checkpoint(cfg), seed=int(cfg.seed))
    critic_cfg = cfg.critic
    if cfg.critic.name == "model":
        critic_cfg = cfg.critic.copy()
        critic_cfg.model = critic_checkpoint(cfg)
    return make_critic(critic_cfg, actor=actor)


def _warmup(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The tiny actor: copied from the shipped checkpoint (``actor.init=shipped``) or trained by its recipe."""
    from trainers.sft import ActorSFTConfig, train_tiny_actor

    a = cfg.actor
    out = run_dir / "actor"
    if a.get("model"):
        return {"skipped": f"actor.model={a.model} is used as it is"}
    if a.init == "shipped":
        if not (SHIPPED_ACTOR / "model.safetensors").exists():
            raise ConfigError(f"actor.init=shipped but there is no checkpoint at {SHIPPED_ACTOR}; use actor.init=train")
        recipe = copy_checkpoint(SHIPPED_ACTOR, out)
        print(f"[warmup] started from the shipped checkpoint {SHIPPED_ACTOR} "
              f"(trained {recipe['train_seconds']} s, loss {recipe['train_loss']})")
        return {"init": "shipped", "checkpoint": str(out), **{k: recipe[k] for k in ("train_loss", "parameters")}}
    if a.init != "train":
        raise ConfigError(f"actor.init must be shipped or train, got {a.init!r}")
    recipe = ActorSFTConfig.from_dict(OmegaConf.to_container(a.warmup, resolve=True))
    print(f"[warmup] training the tiny actor from scratch: {recipe.train_steps} steps of {recipe.batch_size}")
    summary = train_tiny_actor(recipe, out)
    return {"init": "train", "checkpoint": str(out), "train_seconds": summary["train_seconds"],
            "train_loss": summary["train_loss"], "parameters": summary["parameters"]}


def _eval_actor(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Accuracy of the actor alone by difficulty (and, with ``eval.with_critic``, with the configured critic's
    critique -> refine rounds), through the environment and the batched rollout."""
    from critics import NullCritic
    from envs import EnvConfig
    from evaluation import accuracy_by_difficulty, format_table, write_results
    from rollout import RolloutStats, rollout

    actor = make_actor(cfg.actor, actor_checkpoint(cfg), seed=int(cfg.seed))
    problems = eval_problems(cfg)
    env_config = EnvConfig(**{**OmegaConf.to_container(cfg.env, resolve=True), "action_unit": "solution"})
    decoding = "greedy" if float(cfg.actor.temperature) == 0 else f"T={cfg.actor.temperature}"
    runs = [(f"actor ({cfg.actor.backend}, {decoding})", "accuracy", NullCritic())]
    if cfg.eval.with_critic and cfg.critic.name != "none":
        critic = configured_critic(cfg, actor=actor)
        runs.append((f"+ {critic.name} critic, <= {env_config.max_refinements} refinements", "with_critic", critic))
    metrics: dict[str, Any] = {}
    rows = {}
    for label, key, critic in runs:
        stats = RolloutStats()
        records = rollout(problems, actor, critic, env_config, batch_size=int(cfg.actor.batch_size),
                          seed=int(cfg.seed), stats=stats)
        metrics[key] = accuracy_by_difficulty(records)
        metrics[f"{key}_cost"] = {"episodes": stats.episodes, "completion_tokens": stats.completion_tokens,
                                  "seconds": round(stats.seconds, 2)}
        rows[label] = metrics[key]["by_difficulty"]
    md = format_table(rows, list(metrics["accuracy"]["by_difficulty"]),
                      title="Actor accuracy by difficulty (number of steps)")
    print(md)
    write_results(run_dir / "results", "eval_actor", {"actor": OmegaConf.to_container(cfg.actor, resolve=True),
                                          "problems": OmegaConf.to_container(cfg.problems, resolve=True)},
                  metrics, {"accuracy": md})
    return metrics


def eval_problems(cfg: DictConfig) -> list:
    p = cfg.problems
    if p.name == "synthetic":
        levels = p.max_steps - p.min_steps + 1
        source = make_problem_source(p, size=int(cfg.eval.problems_per_level) * levels, split="test")
    else:
        source = make_problem_source(p)
    return list(source)[: cfg.eval.get("max_problems") or None]


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("env_check", _env_check, False, "gymnasium check_env + scripted episodes"),
        Stage("demo", _demo, False, "an episode step by step with the configured critic"),
        Stage("warmup", _warmup, True, "the tiny actor (shipped checkpoint or SFT from scratch)"),
        Stage("eval_actor", _eval_actor, False, "actor accuracy by difficulty"),
        Stage("critique_data", critique_data, True, "AutoMathCritique: flawed responses, critiques, refinement filter"),
        Stage("critic_training", critic_training, True, "the critique model (shipped, or SFT on the critique data)"),
        Stage("eval_critic", eval_critic, False, "critics' verdicts and error locations on held-out solutions"),
        Stage("calibrate_critic", calibrate_critic, False, "the likelihood-gated critic's bound, on training problems"),
        Stage("eval_test_time", eval_test_time, False, "test-time supervision: critique -> refine, voting, scaling"),
        Stage("self_improve", self_improve, True, "training-time supervision: critique-in-the-loop vs RFT (vs GRPO)"),
    )
}


def run_stages(cfg: DictConfig) -> dict[str, Any]:
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    rerun = set(cfg.rerun)
    if "all" in rerun:
        rerun = set(STAGES)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "config.json", OmegaConf.to_container(cfg, resolve=True))
    summary = {}
    for name in cfg.stages:
        stage, out = STAGES[name], run_dir / "stages" / f"{name}.json"
        if stage.cached and out.exists() and name not in rerun:
            print(f"[{name}] cached: {out}")
            summary[name] = read_json(out)
            continue
        print(f"[{name}] {stage.about}")
        start = time.perf_counter()
        result = stage.run(cfg, run_dir)
        result["seconds"] = round(time.perf_counter() - start, 2)
        atomic_write_json(out, result)
        print(f"[{name}] done in {result['seconds']} s -> {out}")
        summary[name] = result
    return summary
