"""What every stage shares: the typed config, the run folder, and the builders that read the registries.

A stage is ``run(run: Run, section) -> summary``: ``section`` is its own typed config (``run.cfg.test_time``
for ``eval_test_time``, ...), and ``run`` builds what the shared sections name -- the actor, critics by
registry name, problems by purpose under the one seeding rule, environment settings -- so no stage reads the
raw config or builds a part its own way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.actor import Actor, build_actor
from core.problem import Problem
from core.protocols import Critic
from core.registry import RegistryError
from critics.registry import CRITICS, CriticConfig, build_critics
from envs.math_env import EnvConfig
from envs.registry import PROBLEM_SOURCES, problems_for
from evaluation.results import write_results
from evaluation.tracking import Tracker
from pipeline.checkpoints import repo_path, run_checkpoint
from pipeline.config import ConfigError
from pipeline.schema import EvalConfig, RunConfig

__all__ = ["Run", "env_settings"]


def env_settings(cfg: RunConfig, **overrides: Any) -> EnvConfig:
    """A run config's environment settings; ``max_action_chars`` null follows the actor's generation budget
    (eight characters a token covers every tokenizer's average), never below 512."""
    env = cfg.env
    if env.max_action_chars is None:
        env = replace(env, max_action_chars=max(512, 8 * cfg.actor.max_new_tokens))
    return replace(env, **overrides)


@dataclass
class Run:
    cfg: RunConfig
    dir: Path
    tracker: Tracker = field(default_factory=lambda: Tracker("disabled", "."))  # the running stage's W&B run

    @property
    def seed(self) -> int:
        return self.cfg.seed

    # -- models ---------------------------------------------------------------------------------------------------

    @property
    def actor_checkpoint(self) -> str | None:
        """``actor.model`` if set, else the warm-up stage's output."""
        return run_checkpoint(self.cfg.actor.model, self.dir, "actor")

    @property
    def critic_checkpoint(self) -> str | None:
        """``critic.model`` if set, else the critic_training stage's output."""
        return run_checkpoint(self.cfg.critic.model, self.dir, "critic")

    def actor(self, checkpoint: str | None = None) -> Actor:
        """The configured actor, from ``checkpoint`` (a folder; a repository-relative one is found) if given."""
        try:
            return build_actor(self.cfg.actor, repo_path(checkpoint) if checkpoint else self.actor_checkpoint,
                               seed=self.seed)
        except (RegistryError, ValueError) as err:
            raise ConfigError(f"actor: {err}") from err

    def critic_settings(self, name: str | None = None, model: str | None = None) -> CriticConfig:
        """The shared ``critic.*`` settings for critic ``name``; trained ones read ``model`` (default: the run's)."""
        name = name or self.cfg.critic.name
        settings = replace(self.cfg.critic, name=name)
        if CRITICS[name].trained:
            path = model or self.critic_checkpoint
            if path is None:
                raise ConfigError(f"critic {name!r} needs a critique model: run the critic_training stage or set "
                                  "critic.model")
            settings = replace(settings, model=str(path))
        return settings

    def critics(self, names: Sequence[str], actor: Actor | None = None, model: str | None = None) -> dict[str, Critic]:
        """Critics by registry name (trained ones share one loaded model); the actor is built if one needs it."""
        try:
            needs_actor = any(CRITICS[n].needs_actor for n in names)
            trained = [n for n in names if CRITICS[n].trained]
        except RegistryError as err:
            raise ConfigError(str(err)) from err
        if needs_actor and actor is None:
            actor = self.actor()
        settings = self.critic_settings(trained[0], model) if trained else self.cfg.critic
        try:
            return build_critics(list(names), settings, actor, seed=self.seed)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def critic(self, actor: Actor | None = None) -> Critic:
        """The configured critic (``critic=...``)."""
        return self.critics([self.cfg.critic.name], actor)[self.cfg.critic.name]

    def label(self, name: str) -> str:
        return CRITICS[name].label

    # -- problems and environments ----------------------------------------------------------------------------------

    @property
    def generated(self) -> bool:
        """The configured source generates its problems (synthetic): any number per level, with programs."""
        return PROBLEM_SOURCES[self.cfg.problems.name].generated

    @property
    def levels(self) -> list[int]:
        return self.cfg.problems.levels

    def problems(self, purpose: str, split: str, size: int | None = None, levels: Sequence[int] | None = None,
                 iteration: int = 0) -> list[Problem]:
        """Problems of the configured source for a purpose (envs/registry.py: the seeding rule)."""
        try:
            PROBLEM_SOURCES[self.cfg.problems.name]
        except RegistryError as err:
            raise ConfigError(str(err)) from err
        try:
            return problems_for(self.cfg.problems, purpose, self.seed, split, size, levels, iteration)
        except (FileNotFoundError, ValueError) as err:  # a missing file, a bad row (named in the message)
            raise ConfigError(f"problems={self.cfg.problems.name}: {err}") from err

    def eval_problems(self, e: EvalConfig) -> list[Problem]:
        """Held-out problems: ``problems_per_level`` per generated level, or a seeded sample of a file's rows
        (``max_problems``; null: all of them)."""
        if self.generated:
            return self.problems("eval", "test", e.problems_per_level * len(self.levels))
        return self.problems("eval", self.cfg.problems.split, e.max_problems)

    def env_config(self, **overrides: Any) -> EnvConfig:
        """The run's environment settings (:func:`env_settings`)."""
        return env_settings(self.cfg, **overrides)

    # -- results ----------------------------------------------------------------------------------------------------

    def write_results(self, name: str, config: dict[str, Any], metrics: dict[str, Any], tables: dict[str, str]) -> Path:
        """The one results format (evaluation/results.py) under ``results/``; dataclass configs as plain data."""
        plain = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in config.items()}
        return write_results(self.dir / "results", name, plain, metrics, tables)
