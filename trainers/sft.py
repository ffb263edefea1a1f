"""Supervised warm-up of the tiny actor on synthetic reference solutions, with TRL's ``SFTTrainer``.

The training mix has two kinds of example, both built from the one prompt template the actor uses:

* solve: ``Problem: ...\\nSolution:\\n`` -> the reference solution;
* refine: the problem, the oracle critic's feedback on a solution with one injected error at step k, and the
  correct steps 1..k-1 -> the reference steps from k on. This teaches the actor to use a critique.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.prompts import PromptTemplate
from agents.tiny import TinyModelConfig, build_tiny_model, build_tokenizer
from core.config import config_from_dict
from core.episode import Attempt
from core.progress import show_progress
from critics.oracle import OracleCritic
from envs.math_env import feedback_summary
from envs.synthetic import ERROR_KINDS, SyntheticArithmetic, corrupt_solution
from storage import atomic_directory

__all__ = ["ActorSFTConfig", "SFTPhase", "build_actor_examples", "recipe_examples", "refinement_example",
           "train_tiny_actor", "sft_train", "with_lora"]


@dataclass
class SFTPhase:
    """One pass of SFT on one set of examples; a checkpoint can be built by several, one after the other."""

    name: str
    examples: list[dict[str, Any]]
    train_steps: int
    learning_rate: float
    sampling_strategy: str | None = None  # None: the run's (config.sampling_strategy)


@dataclass
class ActorSFTConfig:
    """Everything that decides the shipped actor: data, model shape, optimisation, seed."""

    seed: int = 0
    num_problems: int = 60_000
    min_steps: int = 1
    max_steps: int = 8
    max_operand: int = 30
    max_value: int = 499
    distractors: int = 0  # up to this many sentences about someone else per question (envs/synthetic.py)
    refine_share: float = 0.3
    number_format: str = "reversed"
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    train_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    max_length: int = 320
    threads: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActorSFTConfig:
        return config_from_dict(cls, d, "ActorSFTConfig", model=TinyModelConfig)


def with_lora(model: Any, r: int, alpha: int, dropout: float = 0.0, target_modules: str | list[str] = "all-linear") -> Any:
    """``model`` wrapped in a LoRA adapter (peft); :func:`sft_train` merges it back into the saved weights."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                                            task_type="CAUSAL_LM"))


def refinement_example(template: Any, question: str, attempt: Attempt, steps: Sequence[str]) -> tuple[str, str]:
    """(prompt, completion) teaching a refinement: the prompt the actor is given after ``attempt`` was cut back
    (the critique's feedback, the first ``cut_at`` lines of ``steps``) and, as the target, the rest of ``steps``."""
    kept = list(steps)[: attempt.cut_at]
    header = template.header(question, feedback_summary(attempt.critique), previous=attempt.steps,
                             critique=attempt.critique)
    return header + template.solution_lines(kept), template.completion(list(steps)[len(kept):])


def build_actor_examples(config: ActorSFTConfig) -> list[dict[str, str]]:
    template = PromptTemplate(number_format=config.number_format)
    problems = SyntheticArithmetic(size=config.num_problems, min_steps=config.min_steps, max_steps=config.max_steps,
                                   max_operand=config.max_operand, max_value=config.max_value, split="train",
                                   seed=config.seed, distractors=config.distractors)
    rng = random.Random(config.seed)
    oracle = OracleCritic()
    examples = []
    for problem in problems:
        if rng.random() < config.refine_share:
            k = rng.randint(1, problem.difficulty)
            bad = corrupt_solution(problem, k, rng.choice(ERROR_KINDS), rng)
            critique = oracle.critique(problem, bad.steps)
            cut = Attempt(list(bad.steps), critique, (critique.first_error_step or k) - 1)
            prompt, completion = refinement_example(template, problem.question, cut, problem.steps)
            examples.append({"prompt": prompt, "completion": completion})
        else:
            examples.append({"prompt": template.prompt(problem.question), "completion": template.completion(problem.steps)})
    return examples


def recipe_examples(checkpoint: str | Path, size: int, seed_offset: int = 0) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """``size`` fresh examples of the recipe a checkpoint was warmed up with (its levels, its refinement share), and
    that recipe: the labelled data the warm-up had, put back in a later fine-tune against forgetting."""
    path = Path(checkpoint) / "recipe.json"
    if not path.exists():
        raise ValueError(f"replay needs the actor's warm-up recipe ({path} not found); set replay: 0")
    recipe = json.loads(path.read_text())["recipe"]
    config = ActorSFTConfig.from_dict(recipe)
    if not size:
        return recipe, []
    return recipe, build_actor_examples(replace(config, num_problems=size, seed=config.seed + seed_offset))


def train_tiny_actor(config: ActorSFTConfig, out_dir: str | Path, log_every: int = 100) -> dict[str, Any]:
    """Build the tokenizer and model, train, and save a checkpoint any backend loads (``save_pretrained``)."""
    import torch
    from transformers import set_seed

    torch.set_num_threads(config.threads)
    set_seed(config.seed)
    examples = build_actor_examples(config)
    tokenizer = build_tokenizer((e["prompt"] + e["completion"] for e in examples), config.model.vocab_size)
    model = build_tiny_model(config.model, tokenizer, seed=config.seed)
    return sft_train(model, tokenizer, examples, config, out_dir, recipe=asdict(config), log_every=log_every)


def sft_train(model: Any, tokenizer: Any, examples: list[dict[str, str]] | list[SFTPhase], config: Any,
              out_dir: str | Path, recipe: dict[str, Any], log_every: int = 100,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Prompt/completion SFT with TRL (loss on the completion only); the checkpoint folder appears atomically.

    ``examples`` is one set of examples (trained with ``config.train_steps`` and ``config.learning_rate``) or a
    list of :class:`SFTPhase` run one after the other, each with its own cosine schedule and the run's seed.
    ``config`` supplies seed, batch_size, warmup_ratio, weight_decay, max_length, and optionally
    sampling_strategy (``group_by_length`` batches examples of similar length: less padding).
    ``extra`` goes into ``recipe.json`` beside the recipe (e.g. what the training data was).
    """
    import shutil

    from transformers import set_seed

    phases = (examples if examples and isinstance(examples[0], SFTPhase)
              else [SFTPhase("sft", examples, config.train_steps, config.learning_rate)])
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        done = []
        for phase in phases:
            if phase.train_steps <= 0:
                continue
            set_seed(config.seed)
            done.append(_train_phase(model, tokenizer, phase, config, tmp / "trainer", log_every))
        if hasattr(model, "merge_and_unload"):  # a LoRA model (peft): keep the adapter, save the merged weights
            model.save_pretrained(tmp / "adapter")
            model = model.merge_and_unload()
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        summary = {
            "recipe": recipe,
            "examples": sum(p["examples"] for p in done),
            "train_seconds": round(sum(p["train_seconds"] for p in done), 1),
            "train_loss": done[-1]["train_loss"] if done else None,
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer),
            "log": [{**h, "phase": p["name"]} for p in done for h in p["log"]],
            "phases": [{k: v for k, v in p.items() if k != "log"} for p in done],
            **(extra or {}),
        }
        (tmp / "recipe.json").write_text(json.dumps(summary, indent=2))
    return summary


def _train_phase(model: Any, tokenizer: Any, phase: SFTPhase, config: Any, work_dir: Path,
                 log_every: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if not phase.examples:
        raise ValueError(f"SFT phase {phase.name!r} has no examples")
    args = SFTConfig(
        output_dir=str(work_dir),
        max_steps=phase.train_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=phase.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, int(config.warmup_ratio * phase.train_steps)),
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        logging_steps=log_every,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        disable_tqdm=not show_progress(),
        bf16=False,
        train_sampling_strategy=phase.sampling_strategy or getattr(config, "sampling_strategy", "random"),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(phase.examples),
                         processing_class=tokenizer)
    start = time.perf_counter()
    result = trainer.train()
    return {
        "name": phase.name,
        "examples": len(phase.examples),
        "train_steps": phase.train_steps,
        "train_seconds": round(time.perf_counter() - start, 1),
        "train_loss": round(result.training_loss, 4),
        "log": [h for h in trainer.state.log_history if "loss" in h],
    }
