"""Refinement fine-tune: teach the actor to use a critique of *its own* mistakes.

The warm-up's refinement examples correct injected errors. At test time the critique is of the actor's own
wrong solutions, and the tiny actor, told the right value of its wrong step, often writes it wrong again. Here
the actor's sampled solutions to training problems have gone through one critique -> refine round with the
oracle (the environment's own round, so each prompt is exactly the one a refinement is given). Where the steps
the critique kept are the reference's, the target is the reference from the flagged step on. The warm-up's
examples are mixed back in against forgetting.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from core.episode import EpisodeRecord
from trainers.sft import recipe_examples, refinement_example, sft_train

__all__ = ["RefineTuneConfig", "own_error_refinements", "refine_tune"]


@dataclass
class RefineTuneConfig:
    problems_per_level: int = 0       # training problems per level the actor samples for mistakes (0: off)
    levels: list[int] = field(default_factory=lambda: [5, 6, 7, 8])
    temperature: float = 1.0          # the first attempts' sampling temperature
    replay: int = 6000                # examples of the warm-up's own recipe mixed in
    train_steps: int = 600
    batch_size: int = 32
    learning_rate: float = 3e-4
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    max_length: int = 320
    own_errors: bool = True           # false: the control, each own-mistake row swapped for one more replay example

    def __post_init__(self) -> None:
        if self.problems_per_level < 0 or self.replay < 0 or self.train_steps < 0:
            raise ValueError("actor.refine_tune: problems_per_level, replay and train_steps must be >= 0")


def own_error_refinements(records: Sequence[EpisodeRecord], template: Any) -> tuple[list[dict[str, str]], dict[str, int]]:
    """(prompt, completion) rows from episodes whose first attempt was wrong and was cut back by a critique,
    with the reference steps from the cut on as the target; and counts of what was kept and why not."""
    rows, counts = [], Counter()
    for record in records:
        cut = next((a for a in record.attempts if a.cut_at is not None), None)
        if record.first_correct:
            counts["first_attempt_right"] += 1
        elif cut is None:
            counts["not_cut_back"] += 1
        elif list(cut.steps[: cut.cut_at]) != list(record.problem.steps[: cut.cut_at]):
            counts["kept_steps_not_the_reference"] += 1  # another route: the reference would not continue it
        else:
            prompt, completion = refinement_example(template, record.problem.question, cut, record.problem.steps)
            rows.append({"prompt": prompt, "completion": completion})
            counts[f"level_{record.problem.difficulty}"] += 1
    return rows, dict(sorted(counts.items()))


def refine_tune(model: Any, tokenizer: Any, template: Any, records: Sequence[EpisodeRecord], checkpoint: str | Path,
                config: RefineTuneConfig, out_dir: str | Path, seed: int) -> dict[str, Any]:
    """Fine-tune ``model`` (loaded from ``checkpoint``) on refinements of its own mistakes plus ``replay``
    examples of its recipe; the new checkpoint keeps that recipe (so replay elsewhere still reads it) and records
    this stage's settings and data beside it."""
    rows, counts = own_error_refinements(records, template)
    if not rows:
        raise ValueError(f"actor.refine_tune: no refinement examples from {len(records)} episodes ({counts})")
    found = len(rows)
    if not config.own_errors:  # same examples and steps, none of them the actor's own mistakes
        rows = []
    try:
        recipe, replay = recipe_examples(checkpoint, config.replay + found - len(rows), seed_offset=4242 + seed)
    except ValueError as err:
        raise ValueError(f"actor.refine_tune.{err}") from err
    mix = rows + replay
    random.Random(seed).shuffle(mix)
    settings = SimpleNamespace(seed=seed, **{k: v for k, v in asdict(config).items()
                                             if k in ("train_steps", "batch_size", "learning_rate", "warmup_ratio",
                                                      "weight_decay", "max_length")})
    data = {"own_error_examples": len(rows), "own_errors_found": found, "replay_examples": len(replay),
            "episodes": counts}
    model.train()
    summary = sft_train(model, tokenizer, mix, settings, out_dir, recipe=recipe, log_every=max(1, config.train_steps // 6),
                        extra={"refine_tune": {**asdict(config), "seed": seed, **data}})
    model.eval()
    return {**data, "train_seconds": summary["train_seconds"], "train_loss": summary["train_loss"]}
