"""Building the parts a config names: problem sources, critics, environments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from critics import Critic, NullCritic, OracleCritic
from envs import EnvConfig, MathReasoningEnv, ProblemSource, SyntheticArithmetic, load_gsm8k, load_math
from pipeline.config import ConfigError

__all__ = ["make_problem_source", "make_critic", "make_env", "PROBLEM_SOURCES", "CRITICS"]


def _plain(cfg: DictConfig | dict) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _call(kind: str, name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{kind} {name!r}: {err}") from err


PROBLEM_SOURCES: dict[str, Callable[..., ProblemSource]] = {
    "synthetic": SyntheticArithmetic,
    "gsm8k": load_gsm8k,
    "math": load_math,
}

CRITICS: dict[str, Callable[..., Critic]] = {
    "none": NullCritic,
    "oracle": OracleCritic,
}


def _lookup(kind: str, registry: dict[str, Callable], cfg: DictConfig | dict) -> tuple[str, Callable, dict]:
    kwargs = _plain(cfg)
    name = kwargs.pop("name", None)
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(registry)}")
    return name, registry[name], kwargs


def make_problem_source(cfg: DictConfig | dict, **overrides: Any) -> ProblemSource:
    name, factory, kwargs = _lookup("problem source", PROBLEM_SOURCES, cfg)
    return _call("problem source", name, factory, {**kwargs, **overrides})


def make_critic(cfg: DictConfig | dict, **context: Any) -> Critic:
    name, factory, kwargs = _lookup("critic", CRITICS, cfg)
    return _call("critic", name, factory, {**kwargs, **context})


def make_env(cfg: DictConfig, problems: ProblemSource | None = None, critic: Critic | None = None) -> MathReasoningEnv:
    try:
        env_config = EnvConfig(**_plain(cfg.env))
    except TypeError as err:
        raise ConfigError(f"env: {err}; valid keys: {', '.join(EnvConfig.__dataclass_fields__)}") from err
    return MathReasoningEnv(
        problems if problems is not None else make_problem_source(cfg.problems),
        critic if critic is not None else make_critic(cfg.critic),
        env_config,
    )
