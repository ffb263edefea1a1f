"""Building one part from its config outside the stages (notebooks, tests, benchmarks): the same registries
the stages read, with config errors that name the part."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from core.problem import ListProblemSource
from core.protocols import Critic
from core.registry import RegistryError
from critics.registry import CriticConfig, build_critic
from envs.math_env import MathReasoningEnv
from envs.registry import ProblemsConfig, build_source
from pipeline.config import ConfigError
from pipeline.context import Run
from pipeline.schema import RunConfig

__all__ = ["make_critic", "make_env", "make_problem_source", "trained_critics"]


def _typed(kind: str, cls: type, cfg: Any) -> Any:
    if isinstance(cfg, cls):
        return cfg
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(f"{kind} {cfg.get('name')!r}: unknown key(s) {unknown}; valid: {', '.join(sorted(known))}")
    return cls(**cfg)


def make_problem_source(cfg: ProblemsConfig | dict, **overrides: Any) -> ListProblemSource:
    """The configured problem source as it stands (its own split, size and seed), or with ``overrides``."""
    problems = _typed("problem source", ProblemsConfig, {**cfg, **overrides} if isinstance(cfg, dict) else cfg)
    try:
        return ListProblemSource(build_source(problems), name=problems.name)
    except RegistryError as err:
        raise ConfigError(str(err)) from err


def make_critic(cfg: CriticConfig | dict, actor: Any = None, seed: int = 0) -> Critic:
    try:
        return build_critic(_typed("critic", CriticConfig, cfg), actor, seed)
    except (RegistryError, ValueError) as err:
        raise ConfigError(str(err)) from err


def make_env(cfg: RunConfig, problems: Any = None, critic: Critic | None = None) -> MathReasoningEnv:
    return MathReasoningEnv(problems if problems is not None else make_problem_source(cfg.problems),
                            critic if critic is not None else make_critic(cfg.critic), cfg.env)


def trained_critics(cfg: RunConfig, variants: list[str]) -> dict[str, Critic]:
    """The run's critique model as each of ``variants``, loaded once and shared by all of them."""
    return Run(cfg, Path(cfg.run_dir)).critics(variants)
