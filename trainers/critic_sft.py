"""Supervised training of a critique model on an AutoMathCritique dataset, with the actor's SFT machinery.

``init="actor"`` starts from the actor checkpoint (same tokenizer, and the actor already knows how to derive a
step from the story, which is most of checking one); ``init="scratch"`` builds a new tokenizer and model of the
tiny shape. The critic learns to write the critique in the one format after ``Critique:``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.prompts import PromptTemplate
from agents.tiny import TinyModelConfig, build_tiny_model, build_tokenizer
from autocritique.pipeline import rows_to_examples
from trainers.sft import sft_train

__all__ = ["CriticSFTConfig", "train_tiny_critic"]


@dataclass
class CriticSFTConfig:
    """Everything that decides a trained critic besides its data: start point, optimisation, seed."""

    seed: int = 0
    init: str = "actor"  # actor | scratch
    number_format: str = "reversed"
    model: TinyModelConfig = field(default_factory=TinyModelConfig)  # shape for init=scratch
    train_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    max_length: int = 448
    sampling_strategy: str = "group_by_length"  # critiques vary a lot in length: batch similar ones together
    threads: int = 2

    def __post_init__(self) -> None:
        if self.init not in ("actor", "scratch"):
            raise ValueError(f"critic init must be 'actor' or 'scratch', got {self.init!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CriticSFTConfig:
        d = dict(d)
        model = TinyModelConfig(**d.pop("model", {}))
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown CriticSFTConfig key(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(model=model, **d)


def train_tiny_critic(config: CriticSFTConfig, rows: list[dict[str, Any]], out_dir: str | Path,
                      actor_checkpoint: str | Path | None = None, log_every: int = 100,
                      render: Any = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a critique model on critique rows; ``render`` picks the text format (default: the stepwise one),
    ``data`` (the dataset's stats) is kept in ``recipe.json``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    torch.set_num_threads(config.threads)
    set_seed(config.seed)
    examples = rows_to_examples(rows, PromptTemplate(number_format=config.number_format), render)
    if not examples:
        raise ValueError("the critique dataset is empty; nothing to train the critic on")
    if config.init == "actor":
        if actor_checkpoint is None:
            raise ValueError("critic init=actor needs the actor checkpoint")
        tokenizer = AutoTokenizer.from_pretrained(actor_checkpoint)
        model = AutoModelForCausalLM.from_pretrained(actor_checkpoint)
    else:
        tokenizer = build_tokenizer((e["prompt"] + e["completion"] for e in examples), config.model.vocab_size)
        model = build_tiny_model(config.model, tokenizer, seed=config.seed)
    recipe = asdict(config) | {"actor_checkpoint": str(actor_checkpoint) if config.init == "actor" else None}
    return sft_train(model, tokenizer, examples, config, out_dir, recipe=recipe, log_every=log_every,
                     extra={"data": data} if data else None)
