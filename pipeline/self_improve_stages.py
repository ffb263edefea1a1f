"""The training-time supervision stage: critique-in-the-loop vs vanilla self-improvement (and GRPO) at equal budget.

Every algorithm in ``self_improve.algorithms`` (trainers/registry.py) starts from the same warm-up actor and
runs on the same rollout runner kind: Ray workers (``ray.enabled``) or in-process, both given every critic an
algorithm may name.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from agents.actor import Actor
from core.protocols import RolloutRunner
from core.registry import RegistryError
from critics.registry import CRITICS, CriticConfig
from evaluation.report import self_improve_tables
from evaluation.tracking import EPISODE_COLUMNS, episode_rows
from pipeline.checkpoints import REPO, repo_path
from pipeline.config import ConfigError
from pipeline.context import Run
from rollout.ray_pool import LocalRolloutRunner, RayRolloutPool, WorkerSpec
from trainers.registry import ALGORITHMS
from trainers.self_improve import ResumeMismatch, SelfImproveConfig

__all__ = ["self_improve"]


def _critic_settings(run: Run) -> dict[str, CriticConfig]:
    """Every registered critic the runner can build (trained ones only when there is a critique model)."""
    out = {}
    for name in CRITICS:
        entry = CRITICS[name]
        if entry.trained and run.critic_checkpoint is None:
            continue
        settings = run.critic_settings(name)
        out[name] = replace(settings, threads=run.cfg.ray.threads_per_worker) if entry.trained else settings
    return out


def _context(run: Run, actor: Actor, env: dict[str, Any], critic: CriticConfig | None) -> dict[str, Any]:
    """What else decides an iteration's numbers, for the resume check: the environment, the actor's sampling and
    batch (rows share random draws by slot), the critic in the loop. A critique model inside the run folder or
    the repository is named relative to it, so a copied run folder or another clone still resumes."""
    out: dict[str, Any] = {"env": env, "sampling": asdict(actor.sampling), "batch_size": run.cfg.actor.batch_size}
    if critic is not None:
        settings = {k: v for k, v in asdict(critic).items() if k != "threads"}  # threads follow the Ray spec
        if settings["model"] and Path(settings["model"]).exists():
            model = Path(settings["model"]).resolve()
            for base in (Path(run.dir).resolve(), REPO):
                if model.is_relative_to(base):
                    settings["model"] = str(model.relative_to(base))
                    break
        out["critic"] = settings
    return out


def _env(run: Run) -> dict[str, Any]:
    return asdict(run.env_config(action_unit="solution"))  # the run's env settings; each rollout sets its rounds


def _runner(run: Run, actor: Actor, critics: dict[str, CriticConfig], checkpoint: str | None = None) -> RolloutRunner:
    r, a, env = run.cfg.ray, run.cfg.actor, _env(run)
    if not r.enabled:
        return LocalRolloutRunner(actor, critics, env=env, batch_size=a.batch_size, seed=run.seed)
    spec = WorkerSpec(checkpoint or run.actor_checkpoint, a, actor.sampling, critics, env, a.batch_size, r.threads_per_worker,
                      run.seed)
    return RayRolloutPool(r, spec, local_actor=actor)


def self_improve(run: Run, s: SelfImproveConfig) -> dict[str, Any]:
    try:
        entries = {name: ALGORITHMS[name] for name in s.algorithms}
    except RegistryError as err:
        raise ConfigError(str(err)) from err
    critics = _critic_settings(run)
    if any(e.uses_critic for e in entries.values()) and s.critic not in critics:
        raise ConfigError(f"self_improve.critic={s.critic!r} is not available; have {sorted(critics)} "
                          "(a trained critic needs the critic_training stage)")
    checkpoint = repo_path(s.actor) if s.actor else run.actor_checkpoint  # checked by pipeline/checks.py
    histories: dict[str, list[dict[str, Any]]] = {}
    for name, entry in entries.items():
        actor = run.actor(checkpoint)  # every algorithm starts here
        runner = _runner(run, actor, critics, checkpoint)
        context = _context(run, actor, _env(run), critics[s.critic] if entry.uses_critic else None)
        try:
            trainer = entry.cls(s, runner, actor, run.dir / "self_improve" / name, run.cfg.problems, algorithm=name,
                                seed=run.seed, context=context)
            trainer.on_records = lambda key, records, name=name: run.tracker.table(
                f"episodes/{name}/{key}", EPISODE_COLUMNS, episode_rows(records[: s.table_episodes]))
            histories[name] = [h.to_dict() for h in trainer.run(resume=run.cfg.resume)]
        except ResumeMismatch as err:
            raise ConfigError(f"resume=true: {err}") from err
        finally:
            runner.shutdown()
    tables = self_improve_tables(histories)
    for md in tables.values():
        print(md + "\n")
    run.write_results("self_improve", {"self_improve": s, "ray": run.cfg.ray}, {"history": histories}, tables)
    return {name: {k: h[-1].get(k) for k in ("heldout", "exploration", "diversity", "generations")}
            for name, h in histories.items()}
