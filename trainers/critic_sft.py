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

__all__ = ["CriticSFTConfig", "train_tiny_critic", "verdict_examples"]


@dataclass
class CriticSFTConfig:
    """Everything that decides a trained critic besides its data: start point, optimisation, seed."""

    seed: int = 0
    init: str = "actor"  # actor | scratch | checkpoint (continue training ``checkpoint``, e.g. a critic)
    checkpoint: str | None = None
    verdict_examples: int = 0  # extra examples that end at a verdict, half "correct" and half "wrong" lines
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
        if self.init not in ("actor", "scratch", "checkpoint"):
            raise ValueError(f"critic init must be 'actor', 'scratch' or 'checkpoint', got {self.init!r}")
        if self.init == "checkpoint" and not self.checkpoint:
            raise ValueError("critic init=checkpoint needs recipe.checkpoint (the model to continue from)")

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
    template = PromptTemplate(number_format=config.number_format)
    examples = rows_to_examples(rows, template, render)
    if not examples:
        raise ValueError("the critique dataset is empty; nothing to train the critic on")
    examples += verdict_examples(rows, template, config.verdict_examples, config.seed)
    if config.init in ("actor", "checkpoint"):
        start = actor_checkpoint if config.init == "actor" else config.checkpoint
        if start is None:
            raise ValueError("critic init=actor needs the actor checkpoint")
        tokenizer = AutoTokenizer.from_pretrained(start)
        model = AutoModelForCausalLM.from_pretrained(start)
    else:
        tokenizer = build_tokenizer((e["prompt"] + e["completion"] for e in examples), config.model.vocab_size)
        model = build_tiny_model(config.model, tokenizer, seed=config.seed)
    recipe = asdict(config) | {"actor_checkpoint": str(actor_checkpoint) if config.init == "actor" else None}
    return sft_train(model, tokenizer, examples, config, out_dir, recipe=recipe, log_every=log_every,
                     extra={"data": data} if data else None)


def verdict_examples(rows: list[dict[str, Any]], template: PromptTemplate, n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` stepwise examples that stop at one judged line: the prompt holds the lines before it and the line up
    to its verdict (``Step 2: 51*3=153 | says 51*3=160 |``), the completion is the verdict (and explanation).

    Half end at a wrong line, half at a correct one. In whole critiques about six lines in seven are correct and
    the verdict is one token among a hundred, so a critic can fit them by always saying "correct"; these
    examples make the comparison itself carry the loss.
    """
    import random

    from critics.critique import Critique
    from critics.model_critic import model_text

    if n <= 0:
        return []
    lines_of = []
    for row in rows:
        text = model_text(Critique.parse(row["critique"], num_steps=len(row["steps"])), row["steps"], row.get("answer"))
        lines_of.append(text.splitlines())
    wrong = [(i, len(lines) - 1) for i, lines in enumerate(lines_of) if lines and "| wrong" in lines[-1]]
    right = [(i, k) for i, lines in enumerate(lines_of) for k, line in enumerate(lines) if "| correct" in line]
    if not wrong or not right:
        return []
    rng = random.Random(seed)
    out = []
    for j in range(n):
        i, k = rng.choice(wrong if j % 2 else right)
        line = lines_of[i][k]
        cut = line.index("|", line.index("| says") + 2) + 1
        prior = "".join(f"{earlier}\n" for earlier in lines_of[i][:k])
        row = rows[i]
        out.append({"prompt": template.critique_prompt(row["question"], row["steps"]) + template.codec.encode(prior + line[:cut]),
                    "completion": template.codec.encode(line[cut:])})
    return out
