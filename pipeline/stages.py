"""The stages ``train.py`` runs, and the runner that caches each finished stage in the run folder.

Each stage is ``run(run, section) -> summary``: :class:`~pipeline.context.Run` holds the typed config and the
builders, ``section`` is the stage's own config (the ``Stage`` table names which).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from gymnasium.utils.env_checker import check_env

from agents.actor import Actor
from agents.backends import trainable
from core.problem import ListProblemSource
from critics.base import NullCritic
from envs.math_env import MathReasoningEnv, run_episode
from envs.registry import build_source
from envs.scripted import ScriptedActor
from envs.synthetic import SyntheticArithmetic
from evaluation.metrics import accuracy_by_difficulty
from evaluation.report import format_table
from pipeline.checkpoints import SHIPPED_ACTOR, copy_checkpoint
from pipeline.checks import check_config
from pipeline.config import ConfigError
from pipeline.context import Run
from pipeline.critic_stages import calibrate_critic, critic_training, critique_data, eval_critic
from pipeline.run_report import write_report
from pipeline.schema import ActorGroupConfig, DemoConfig, EnvCheckConfig, EvalConfig, RunConfig
from pipeline.self_improve_stages import self_improve
from pipeline.self_talk_stages import self_talk
from pipeline.stage_tracking import log_stage, stage_tracker
from pipeline.test_time_stages import eval_test_time
from rollout.loop import RolloutStats, rollout
from storage import atomic_write_json, read_json
from trainers.refine_tune import refine_tune
from trainers.sft import train_tiny_actor

__all__ = ["STAGES", "Stage", "run_stages"]


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Run, Any], dict[str, Any]]
    section: str  # the RunConfig field the stage is given
    cached: bool  # a finished run is reused until asked to rerun (expensive stages: training)
    about: str


def _configured_env(run: Run, problems: list, critic: Any = None) -> MathReasoningEnv:
    """The configured environment over ``problems``, one line per action: scripted actors write one step at a
    time."""
    source = ListProblemSource(problems, name=run.cfg.problems.name)
    return MathReasoningEnv(source, critic if critic is not None else run.critic(), run.env_config(action_unit="step"))


def _scripted_problems(run: Run, size: int, min_steps: int = 1, max_steps: int = 8) -> list:
    """Problems a scripted actor can write with a mistake: the configured ones when they come with reference
    programs (synthetic), else synthetic ones (said in the stage summary)."""
    if run.generated:
        return build_source(run.cfg.problems)
    return SyntheticArithmetic(size=size, min_steps=min_steps, max_steps=max_steps, seed=run.seed, split="test")[:]


def _env_check(run: Run, c: EnvCheckConfig) -> dict[str, Any]:
    """gymnasium's check_env on the configured env, then scripted episodes through it."""
    critic = run.critic()
    configured = build_source(run.cfg.problems)  # the configured source as it stands
    check_env(_configured_env(run, configured, critic), skip_render_check=True)
    problems = configured if run.generated else _scripted_problems(run, c.episodes)
    results: dict[str, Any] = {"check_env": "passed", "critic": critic.name, "episodes": c.episodes}
    if not run.generated:
        results["scripted_problems"] = "synthetic (scripted mistakes need reference programs)"
    for label, actor, episode_critic in (
        ("correct_solutions", ScriptedActor(), critic),
        ("one_error_no_critic", ScriptedActor(error_step=2, seed=run.seed), NullCritic()),
        (f"one_error_with_{critic.name}", ScriptedActor(error_step=2, seed=run.seed), critic),
    ):
        env = _configured_env(run, problems, episode_critic)
        records = [run_episode(env, actor, options={"index": i % len(problems)}) for i in range(c.episodes)]
        results[label] = {"accuracy": sum(r.correct for r in records) / c.episodes,
                          "mean_refinement_rounds": sum(r.refinement_rounds for r in records) / c.episodes}
    return results


def _demo(run: Run, c: DemoConfig) -> dict[str, Any]:
    """Episodes shown step by step: a scripted actor with one mistake, and the configured critic."""
    env = _configured_env(run, _scripted_problems(run, max(8, c.episodes), 3, 5))
    actor = ScriptedActor(error_step=c.error_step, error_kind=c.error_kind, seed=run.seed)
    shown = []
    for episode in range(c.episodes):
        observation, info = env.reset(seed=run.seed + episode)
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
    atomic_write_json(run.dir / "demo_episodes.json", shown)
    return {"episodes": len(shown), "correct": sum(e["correct"] for e in shown)}


def _warmup(run: Run, a: ActorGroupConfig) -> dict[str, Any]:
    """The tiny actor: copied from the shipped checkpoint (``actor.init=shipped``) or trained by its recipe."""
    out = run.dir / "actor"
    if a.model:
        return {"skipped": f"actor.model={a.model} is used as it is"}
    if a.init == "shipped":
        if not (SHIPPED_ACTOR / "model.safetensors").exists():
            raise ConfigError(f"actor.init=shipped but there is no checkpoint at {SHIPPED_ACTOR}; use actor.init=train")
        recipe = copy_checkpoint(SHIPPED_ACTOR, out)
        print(f"[warmup] started from the shipped checkpoint {SHIPPED_ACTOR} "
              f"(trained {recipe['train_seconds']} s, loss {recipe['train_loss']})")
        result = {"init": "shipped", "checkpoint": str(out), **{k: recipe[k] for k in ("train_loss", "parameters")}}
    elif a.init == "train":
        print(f"[warmup] training the tiny actor from scratch: {a.warmup.train_steps} steps of {a.warmup.batch_size}")
        summary = train_tiny_actor(a.warmup, out)
        result = {"init": "train", "checkpoint": str(out), "train_seconds": summary["train_seconds"],
                  "train_loss": summary["train_loss"], "parameters": summary["parameters"]}
    else:
        raise ConfigError(f"actor.init must be shipped or train, got {a.init!r}")
    if a.refine_tune.problems_per_level:
        result["refine_tune"] = _refine_tune(run, a, out)
    return result


def _refine_tune(run: Run, a: ActorGroupConfig, checkpoint: Path) -> dict[str, Any]:
    """The warm-up actor, fine-tuned in place on refinements of its own mistakes (trainers/refine_tune.py): its
    samples on training problems, each wrong one critiqued by the oracle and cut back once."""
    r = a.refine_tune
    actor = run.actor(str(checkpoint))
    sampler = Actor(actor.backend, actor.template, replace(actor.sampling, temperature=r.temperature),
                    actor.action_unit)
    problems = run.problems("refine_tune", "train", r.problems_per_level, levels=r.levels)
    print(f"[warmup] refine-tune: sampling {len(problems)} training problems of levels {list(r.levels)} "
          f"at T={r.temperature}, one oracle critique -> refine round each")
    records = rollout(problems, sampler, run.critics(["oracle"])["oracle"],
                      run.env_config(action_unit="solution", max_refinements=1), batch_size=a.batch_size, seed=run.seed)
    model, tokenizer = trainable(actor.backend)
    try:
        summary = refine_tune(model, tokenizer, actor.template, records, checkpoint, r, checkpoint, run.seed)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    print(f"[warmup] refine-tune: {summary['own_error_examples']} own-mistake refinements + "
          f"{summary['replay_examples']} warm-up examples, {r.train_steps} steps, loss {summary['train_loss']}")
    return summary


def _eval_actor(run: Run, e: EvalConfig) -> dict[str, Any]:
    """Accuracy of the actor alone by difficulty (and, with ``eval.with_critic``, with the configured critic's
    critique -> refine rounds), through the environment and the batched rollout."""
    actor, a = run.actor(), run.cfg.actor
    problems = run.eval_problems(e)
    env_config = run.env_config(action_unit="solution")
    decoding = "greedy" if a.temperature == 0 else f"T={a.temperature}"
    runs = [(f"actor ({a.backend}, {decoding})", "accuracy", NullCritic())]
    if e.with_critic and run.cfg.critic.name != "none":
        critic = run.critic(actor)
        runs.append((f"+ {critic.name} critic, <= {env_config.max_refinements} refinements", "with_critic", critic))
    metrics: dict[str, Any] = {}
    rows = {}
    for label, key, critic in runs:
        stats = RolloutStats()
        records = rollout(problems, actor, critic, env_config, batch_size=a.batch_size, seed=run.seed, stats=stats)
        metrics[key] = accuracy_by_difficulty(records)
        metrics[f"{key}_cost"] = {"episodes": stats.episodes, "completion_tokens": stats.completion_tokens,
                                  "seconds": round(stats.seconds, 2)}
        rows[label] = metrics[key]["by_difficulty"]
    md = format_table(rows, list(metrics["accuracy"]["by_difficulty"]),
                      title="Actor accuracy by difficulty (number of steps)")
    print(md)
    run.write_results("eval_actor", {"actor": a, "problems": run.cfg.problems}, metrics, {"accuracy": md})
    return metrics


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("env_check", _env_check, "env_check", False, "gymnasium check_env + scripted episodes"),
        Stage("demo", _demo, "demo", False, "an episode step by step with the configured critic"),
        Stage("warmup", _warmup, "actor", True,
              "the tiny actor (shipped checkpoint or SFT from scratch; optionally refine-tuned on its own mistakes)"),
        Stage("eval_actor", _eval_actor, "eval", False, "actor accuracy by difficulty"),
        Stage("critique_data", critique_data, "autocritique", True,
              "AutoMathCritique: flawed responses, critiques, refinement filter"),
        Stage("critic_training", critic_training, "critic_training", True,
              "the critique model (shipped, or SFT on the critique data)"),
        Stage("eval_critic", eval_critic, "eval_critic", False,
              "critics' verdicts and error locations on held-out solutions"),
        Stage("calibrate_critic", calibrate_critic, "calibrate_critic", False,
              "the likelihood-gated critic's bound, on training problems"),
        Stage("eval_test_time", eval_test_time, "test_time", False,
              "test-time supervision: critique -> refine, voting, scaling"),
        Stage("self_improve", self_improve, "self_improve", True,
              "training-time supervision: critique-in-the-loop vs RFT (vs GRPO)"),
        Stage("self_talk", self_talk, "self_talk", True,
              "self-talk: one model that checks and fixes its own steps, trained on the critique data"),
    )
}


def run_stages(cfg: RunConfig) -> dict[str, Any]:
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGES)}")
    errors = check_config(cfg)
    if errors:
        raise ConfigError("; ".join(errors))
    rerun = set(STAGES) if "all" in cfg.rerun else set(cfg.rerun)
    run = Run(cfg, Path(cfg.run_dir))
    run.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.dir / "config.json", asdict(cfg))
    summary = {}
    for name in cfg.stages:
        stage, out = STAGES[name], run.dir / "stages" / f"{name}.json"
        if stage.cached and out.exists() and name not in rerun:
            print(f"[{name}] cached: {out}")
            summary[name] = {**read_json(out), "cached": True}
            continue
        print(f"[{name}] {stage.about}")
        start = time.perf_counter()
        section = getattr(cfg, stage.section)
        run.tracker = stage_tracker(run, name, section)
        try:
            result = stage.run(run, section)
            result["seconds"] = round(time.perf_counter() - start, 2)
            log_stage(run.tracker, run, name, result)
        finally:
            run.tracker.finish()
        atomic_write_json(out, result)
        print(f"[{name}] done in {result['seconds']} s -> {out}")
        summary[name] = result
    report = write_report(cfg, run.dir, summary)
    print("\n" + _stage_times(summary) + f"\nreport: {report}")
    return summary


def _stage_times(summary: dict[str, dict[str, Any]]) -> str:
    """One line per stage with its wall time, and the total of what ran in this call."""
    width = max(map(len, summary), default=5)
    lines = [f"  {name:<{width}}  " + ("  cached" if s.get("cached") else f"{s['seconds']:8.1f} s")
             for name, s in summary.items()]
    ran = sum(s["seconds"] for s in summary.values() if not s.get("cached"))
    return "stage times:\n" + "\n".join(lines) + f"\n  {'total':<{width}}  {ran:8.1f} s"
