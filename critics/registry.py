"""The critic registry: every critic a stage can name, with its label and how it is built from the ``critic:``
config. Every stage reads it (``eval_critic``, ``calibrate_critic``, ``eval_test_time``, ``self_improve``, the
environment stages), so a new critic is one class, one entry here and one ``configs/critic/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agents.actor import backend_template
from agents.backends import load_backend
from agents.prompts import ChatTemplate
from core.protocols import Critic
from core.registry import Registry
from critics.base import NullCritic, RandomStepCritic
from critics.model_critic import ModelCritic
from critics.oracle import OracleCritic
from critics.self_check import SelfCheckCritic

__all__ = ["CRITICS", "CriticConfig", "CriticEntry", "build_critic", "build_critics", "register_critic"]


@dataclass
class CriticConfig:
    """The ``critic:`` config group. Every critic reads the keys it needs; the trained critique model (``model``
    and its variants) reads most of them. ``max_new_tokens`` null: each critic's own default."""

    name: str = "oracle"
    model: str | None = None           # the critique model: a local folder or hub id (default: the run's critic)
    backend: str = "hf"                # hf | openai
    number_format: str = "reversed"    # how numbers are written in the model's text (agents/codec.py)
    template: str = "auto"             # auto: the tokenizer's chat template if it has one | chat | plain
    generation: str = "auto"           # stepwise (tiny critics) | whole | auto: whole for a chat template
    max_new_tokens: int | None = None  # per generation (stepwise: per line)
    verdicts: str = "model"            # model | checks | likelihood (critics/model_critic.py)
    accept_probability: float = 0.1    # verdicts=likelihood: a line this likely passes unjudged
    batch_size: int = 64
    threads: int = 2
    engine: str = "auto"               # hf: slots (continuous batching) | generate (model.generate) | auto
    base_url: str = "http://127.0.0.1:8000/v1"   # backend=openai
    served_model: str | None = None


@dataclass(frozen=True)
class CriticEntry:
    build: Callable[[CriticConfig, Any, int], Critic]  # (settings, actor or None, seed) -> critic
    label: str                 # in tables
    description: str = ""      # longer, where critics are compared on their own (eval_critic)
    needs_actor: bool = False  # runs on the actor's model
    trained: bool = False      # reads the critique model ``settings.model``; its variants share one loaded copy
    verdicts: str | None = None  # a trained variant's verdicts (None: ``settings.verdicts``)
    needs_reference: bool = False  # reads the problem's gold answer and reference solution

    @property
    def about(self) -> str:
        return self.description or self.label


CRITICS: Registry[CriticEntry] = Registry("critic")


def register_critic(name: str, entry: CriticEntry, overwrite: bool = False) -> CriticEntry:
    return CRITICS.register(name, entry, replace=overwrite)


def _actor(name: str, actor: Any) -> Any:
    if actor is None:
        raise ValueError(f"critic {name!r} runs on the actor's model: build it with the actor (stages that run one)")
    return actor


def _tokens(settings: CriticConfig, default: int) -> int:
    return settings.max_new_tokens if settings.max_new_tokens is not None else default


def _trained(settings: CriticConfig, actor: Any, seed: int) -> Critic:
    if not settings.model:
        raise ValueError(f"critic {settings.name!r}: no critique model; set critic.model or run the critic_training stage")
    if settings.backend not in ("hf", "openai"):
        raise ValueError(f"unknown critic.backend {settings.backend!r}; valid: hf, openai")
    backend = load_backend(settings.backend, settings.model, batch_size=settings.batch_size, threads=settings.threads,
                           base_url=settings.base_url, served_model=settings.served_model, engine=settings.engine)
    entry = CRITICS[settings.name]
    template = backend_template(backend, settings.template, settings.number_format)
    chat = isinstance(template, ChatTemplate)
    generation = settings.generation if settings.generation != "auto" else "whole" if chat else "stepwise"
    return ModelCritic(backend, template, max_new_tokens=_tokens(settings, 512 if generation == "whole" else 64),
                       verdicts=entry.verdicts or settings.verdicts, generation=generation,
                       accept_probability=settings.accept_probability)


register_critic("none", CriticEntry(lambda s, a, seed: NullCritic(), "no critic", "always correct"))
register_critic("oracle", CriticEntry(lambda s, a, seed: OracleCritic(), "oracle", "oracle (reference-aware)",
                                      needs_reference=True))
register_critic("random", CriticEntry(lambda s, a, seed: RandomStepCritic(seed=seed), "random step"))
register_critic("self", CriticEntry(
    lambda s, a, seed: SelfCheckCritic(_actor("self", a).backend, a.template, max_new_tokens=_tokens(s, 32)),
    "self-check", "self-check (actor recomputes each step)", needs_actor=True))
register_critic("self_reflection", CriticEntry(
    lambda s, a, seed: ModelCritic(_actor("self_reflection", a).backend, a.template,
                                   max_new_tokens=_tokens(s, 512 if isinstance(a.template, ChatTemplate) else 160),
                                   generation="whole"),
    "self-reflection", "self-reflection (actor asked for a critique)", needs_actor=True))
register_critic("model", CriticEntry(_trained, "trained critic", trained=True))
register_critic("model_checks", CriticEntry(_trained, "trained critic, compared in code",
                                            "trained critic's computations, compared in code", trained=True,
                                            verdicts="checks"))
register_critic("model_likelihood", CriticEntry(_trained, "trained critic, likelihood-gated", trained=True,
                                                verdicts="likelihood"))


def build_critic(settings: CriticConfig, actor: Any = None, seed: int = 0) -> Critic:
    """The critic ``settings.name`` names, built from the shared critic settings."""
    return CRITICS[settings.name].build(settings, actor, seed)


def build_critics(names: list[str], settings: CriticConfig, actor: Any = None, seed: int = 0) -> dict[str, Critic]:
    """Several critics by name from the same settings; the trained ones share one loaded critique model."""
    entries = {n: CRITICS[n] for n in names}  # an unknown name fails here, before anything loads
    critics: dict[str, Critic] = {}
    shared: ModelCritic | None = None
    for name, entry in entries.items():
        if entry.trained and shared is not None:
            critics[name] = shared.variant(entry.verdicts or settings.verdicts)
            continue
        critics[name] = entry.build(replace(settings, name=name), actor, seed)
        if entry.trained:
            shared = critics[name]
    return critics
