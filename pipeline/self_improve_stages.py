"""The training-time supervision stage: critique-in-the-loop vs vanilla self-improvement (and GRPO) at equal budget."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.checkpoints import actor_checkpoint, critic_checkpoint
from pipeline.config import ConfigError
from pipeline.factory import TRAINED_CRITIC_VERDICTS, make_actor, trained_critic_config

__all__ = ["self_improve", "ALGORITHMS"]

ALGORITHMS = ("critique", "rft", "grpo", "grpo_critic")


def _critic_configs(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    configs: dict[str, dict[str, Any]] = {"none": {"name": "none"}, "oracle": {"name": "oracle"},
                                          "self": {"name": "self"}}
    if critic_checkpoint(cfg) is not None:
        for variant in TRAINED_CRITIC_VERDICTS:
            configs[variant] = {**trained_critic_config(cfg, variant), "threads": int(cfg.ray.threads_per_worker)}
    return configs


def _runner(cfg: DictConfig, actor: Any, critics: dict[str, dict[str, Any]]) -> Any:
    from rollout.ray_pool import LocalRolloutRunner, RayConfig, RayRolloutPool, WorkerSpec

    r = cfg.ray
    if not r.enabled:
        return LocalRolloutRunner(actor, critics, batch_size=int(cfg.actor.batch_size))
    settings = OmegaConf.to_container(r, resolve=True)
    settings.pop("enabled")
    config = RayConfig.from_dict(settings)
    spec = WorkerSpec(actor_checkpoint(cfg), str(cfg.actor.number_format), actor.sampling, critics, {},
                      int(cfg.actor.batch_size), config.threads_per_worker)
    return RayRolloutPool(config, spec)


def self_improve(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from evaluation import write_results
    from trainers.grpo import GRPOBaseline, GRPOBaselineConfig
    from trainers.self_improve import SelfImproveConfig, SelfImprover

    s = OmegaConf.to_container(cfg.self_improve, resolve=True)
    algorithms = s.pop("algorithms")
    grpo = s.pop("grpo")
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown:
        raise ConfigError(f"unknown self_improve algorithm(s) {unknown}; valid: {', '.join(ALGORITHMS)}")
    p = cfg.problems
    if p.name == "synthetic":
        s.update(min_steps=int(p.min_steps), max_steps=int(p.max_steps), max_operand=int(p.max_operand),
                 max_value=int(p.max_value))
    s.setdefault("seed", int(cfg.seed))
    critics = _critic_configs(cfg)
    if "critique" in algorithms and s["critic"] not in critics:
        raise ConfigError(f"self_improve.critic={s['critic']!r} is not available; have {sorted(critics)} "
                          "(critic 'model' needs the critic_training stage)")
    histories: dict[str, list[dict[str, Any]]] = {}
    for name in algorithms:
        actor = make_actor(cfg.actor, actor_checkpoint(cfg), seed=int(cfg.seed))  # every algorithm starts here
        runner = _runner(cfg, actor, critics)
        try:
            if name.startswith("grpo"):
                config = GRPOBaselineConfig.from_dict({**s, "beta": grpo["beta"],
                                                       "grpo_learning_rate": grpo["learning_rate"],
                                                       "critic_reward_weight": grpo["critic_reward_weight"]
                                                       if name == "grpo_critic" else 0.0})
                trainer: SelfImprover = GRPOBaseline(config, runner, actor, run_dir / "self_improve" / name, name=name)
            else:
                config = replace(SelfImproveConfig.from_dict(s), algorithm=name)
                trainer = SelfImprover(config, runner, actor, run_dir / "self_improve" / name, name=name)
            histories[name] = trainer.run(resume=bool(cfg.resume))
        finally:
            runner.shutdown()
    tables = _tables(histories)
    for md in tables.values():
        print(md + "\n")
    write_results(run_dir / "results", "self_improve", {"self_improve": OmegaConf.to_container(cfg.self_improve,
                                                                                               resolve=True),
                                                        "ray": OmegaConf.to_container(cfg.ray, resolve=True)},
                  {"history": histories}, tables)
    return {name: {k: h[-1].get(k) for k in ("heldout", "exploration", "diversity", "generations")}
            for name, h in histories.items()}


def _tables(histories: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    from evaluation import format_table

    levels = list(next(iter(histories.values()))[0]["heldout"]["by_difficulty"])
    rows = {}
    for name, history in histories.items():
        if not rows:
            rows["start (warm-up actor)"] = {k: {"accuracy": v} for k, v in history[0]["heldout"]["by_difficulty"].items()}
        last = history[-1]
        rows[f"{name}, after {last['iteration']} iterations"] = {
            k: {"accuracy": v} for k, v in last["heldout"]["by_difficulty"].items()}
    held = format_table(rows, levels, title="Self-improvement: held-out greedy accuracy by difficulty")
    lines = ["**Per iteration, at equal generation budget**", "",
             "| algorithm | iteration | held-out | exploration | diversity | generations | tokens | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for name, history in histories.items():
        for h in history[1:]:
            lines.append(f"| {name} | {h['iteration']} | {h['heldout']['overall']:.3f} | {h.get('exploration', 0):.3f} | "
                         f"{h.get('diversity', 0):.2f} | {h.get('generations', '–')} | {h.get('tokens', '–')} | "
                         f"{h['seconds']} |")
    return {"heldout": held, "iterations": "\n".join(lines)}
