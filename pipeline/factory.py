"""Building the parts a config names: problem sources, critics, environments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from critics import Critic, NullCritic, OracleCritic
from envs import EnvConfig, MathReasoningEnv, ProblemSource, SyntheticArithmetic, load_gsm8k, load_math
from pipeline.config import ConfigError

__all__ = ["make_problem_source", "make_critic", "make_env", "make_actor", "trained_critic_config", "trained_critics",
           "PROBLEM_SOURCES", "CRITICS", "TRAINED_CRITIC_VERDICTS"]


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

def _self_check(actor: Any = None, max_new_tokens: int = 32) -> Critic:
    from critics.self_check import SelfCheckCritic

    if actor is None:
        raise ConfigError("critic=self needs the actor's model: it is built with the actor (stages that run one)")
    return SelfCheckCritic(actor.backend, actor.template, max_new_tokens=max_new_tokens)


def _model_critic(actor: Any = None, model: str | None = None, backend: str = "hf", number_format: str = "reversed",
                  max_new_tokens: int = 64, batch_size: int = 64, threads: int = 2,
                  base_url: str = "http://127.0.0.1:8000/v1", served_model: str | None = None,
                  verdicts: str = "model", generation: str = "stepwise", accept_probability: float = 0.1) -> Critic:
    from agents.backends import make_backend
    from agents.prompts import PromptTemplate
    from critics.model_critic import ModelCritic

    if not model:
        raise ConfigError("critic=model: no critique model; set critic.model or run the critic_training stage")
    if backend == "hf":
        lm = make_backend("hf", str(model), batch_size=int(batch_size), threads=int(threads))
    elif backend == "openai":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model)) if Path(str(model)).exists() else None
        lm = make_backend("openai", str(served_model or model), base_url=base_url, tokenizer=tokenizer)
    else:
        raise ConfigError(f"unknown critic.backend {backend!r}; valid: hf, openai")
    return ModelCritic(lm, PromptTemplate(number_format=number_format), max_new_tokens=int(max_new_tokens),
                       verdicts=verdicts, generation=generation, accept_probability=float(accept_probability))


# every builder takes the actor (``None`` when the stage has none) and the critic's config keys
CRITICS: dict[str, Callable[..., Critic]] = {
    "none": lambda actor=None: NullCritic(),
    "oracle": lambda actor=None: OracleCritic(),
    "self": _self_check,
    "model": _model_critic,
}


# the run's critique model, by who decides a line is wrong (critics/model_critic.py); None: as critic.verdicts says
TRAINED_CRITIC_VERDICTS = {"model": None, "model_checks": "checks", "model_likelihood": "likelihood"}


def trained_critic_config(cfg: DictConfig, variant: str = "model", path: str | None = None) -> dict[str, Any]:
    """``make_critic`` settings for the run's critique model: the ``critic.*`` settings when ``critic=model``,
    the checkpoint ``path`` (default: the run's), and the variant's verdicts."""
    from pipeline.checkpoints import critic_checkpoint

    if variant not in TRAINED_CRITIC_VERDICTS:
        raise ConfigError(f"unknown trained-critic variant {variant!r}; valid: {', '.join(TRAINED_CRITIC_VERDICTS)}")
    path = path or critic_checkpoint(cfg)
    if path is None:
        raise ConfigError(f"critic {variant!r} needs a critique model: run the critic_training stage or set critic.model")
    settings = _plain(cfg.critic) if cfg.critic.name == "model" else {"name": "model"}
    settings["model"] = str(path)
    if TRAINED_CRITIC_VERDICTS[variant]:
        settings["verdicts"] = TRAINED_CRITIC_VERDICTS[variant]
    return settings


def trained_critics(cfg: DictConfig, variants: list[str], path: str | None = None) -> dict[str, Critic]:
    """The run's critique model as each of ``variants``, loaded once and shared by all of them."""
    if not variants:
        return {}
    first = make_critic(trained_critic_config(cfg, variants[0], path))
    return {v: first.variant(trained_critic_config(cfg, v, path).get("verdicts", "model")) for v in variants}


def _lookup(kind: str, registry: dict[str, Callable], cfg: DictConfig | dict) -> tuple[str, Callable, dict]:
    kwargs = _plain(cfg)
    name = kwargs.pop("name", None)
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(registry)}")
    return name, registry[name], kwargs


def make_problem_source(cfg: DictConfig | dict, **overrides: Any) -> ProblemSource:
    name, factory, kwargs = _lookup("problem source", PROBLEM_SOURCES, cfg)
    return _call("problem source", name, factory, {**kwargs, **overrides})


def make_critic(cfg: DictConfig | dict, actor: Any = None) -> Critic:
    name, factory, kwargs = _lookup("critic", CRITICS, cfg)
    return _call("critic", name, factory, {**kwargs, "actor": actor})


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


def make_actor(actor_cfg: DictConfig, checkpoint: str | None, seed: int = 0) -> Any:
    """An :class:`agents.Actor` over the backend the config names, loading ``checkpoint`` (or ``actor.model``)."""
    from agents.actor import Actor
    from agents.backends import SamplingParams, make_backend
    from agents.prompts import PromptTemplate

    a = actor_cfg
    if a.backend not in ("hf", "openai", "vllm"):
        raise ConfigError(f"unknown actor.backend {a.backend!r}; valid: hf, openai, vllm")
    model = a.model or checkpoint
    if not model:
        raise ConfigError("actor: no model to load; set actor.model or run the warmup stage")
    if a.backend == "hf":
        backend = make_backend("hf", str(model), batch_size=int(a.batch_size), threads=int(a.threads))
    elif a.backend == "openai":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model)) if checkpoint or a.model else None
        backend = make_backend("openai", str(a.served_model or model), base_url=a.base_url, tokenizer=tokenizer)
    else:
        backend = make_backend("vllm", str(model))
    sampling = SamplingParams(max_new_tokens=int(a.max_new_tokens), temperature=float(a.temperature),
                              top_p=float(a.top_p), seed=seed)
    return Actor(backend, PromptTemplate(number_format=a.number_format), sampling, action_unit="solution")
