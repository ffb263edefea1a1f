"""The self-talk model: one model that writes a step, checks it, fixes what it flags, and answers.

Its training transcripts come from what the critique pipeline already made (``critique_data``'s rows): a
flawed response, its step-level critique and the corrected solution become a transcript whose check catches
the first error and whose fix replaces it (``critics/self_talk.py: corrected_transcript``); a right response
and its critique become one whose every check passes. ``correction_share`` of the transcripts carry a
correction. It is trained with the warm-up's SFT machinery from the run's actor.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.backends import trainable
from core.critique import Critique, CritiqueParseError
from critics.self_talk import correct_transcript, corrected_transcript
from trainers.sft import sft_train

__all__ = ["SelfTalkConfig", "build_transcripts", "train_self_talk"]


@dataclass
class SelfTalkConfig:
    """The ``self_talk:`` config: data, training and evaluation of the self-talk model."""

    seed: int = 0
    examples: int = 4000            # transcripts to train on (drawn from the pools, with repetition if short)
    correction_share: float = 0.5   # share of them with a self-correction
    train_steps: int = 400
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 448
    max_new_tokens: int = 320       # a transcript is about twice its solution's length
    problems_per_level: int | None = None  # evaluation problems per level (null: test_time's, the same problems)

    def __post_init__(self) -> None:
        if not 0 <= self.correction_share <= 1:
            raise ValueError(f"correction_share must be in [0, 1], got {self.correction_share}")
        if self.examples < 1:
            raise ValueError(f"examples must be >= 1, got {self.examples}")


def build_transcripts(rows: Sequence[dict[str, Any]], config: SelfTalkConfig) -> tuple[list[dict[str, Any]], dict]:
    """Transcripts from critique rows (``question``, ``steps``, ``critique``, ``is_correct``, ``answer_correct``,
    ``reference``): ``(examples, stats)``; every row is used or counted as dropped with its reason."""
    right, fixed, dropped = [], [], Counter()
    for row in rows:
        steps = list(row["steps"])
        try:
            critique = Critique.parse(row["critique"], num_steps=len(steps))
        except CritiqueParseError:
            dropped["unreadable critique"] += 1
            continue
        try:
            if critique.is_correct:
                if not row.get("answer_correct", True):
                    dropped["accepted but wrong answer"] += 1
                    continue
                right.append((row, correct_transcript(steps, critique)))
            elif not row.get("reference"):
                dropped["flawed, no corrected solution"] += 1
            else:
                fixed.append((row, corrected_transcript(steps, critique, row["reference"])))
        except ValueError as err:  # no answer line, or the correction differs before the flagged step
            dropped[str(err).split(" (")[0].split(",")[0]] += 1
    rng = random.Random(config.seed)
    n_fixed = round(config.examples * config.correction_share) if fixed else 0
    n_right = config.examples - n_fixed if right else 0
    if not right and not fixed:
        raise ValueError(f"no self-talk transcript could be built from {len(rows)} critique rows: {dict(dropped)}")
    chosen = [("corrected", x) for x in _draw(fixed, n_fixed, rng)] + [("correct", x) for x in _draw(right, n_right, rng)]
    rng.shuffle(chosen)
    examples = [{"kind": kind, "question": row["question"], "lines": lines} for kind, (row, lines) in chosen]
    built = Counter(e["kind"] for e in examples)
    stats = {"rows": len(rows), "pools": {"correct": len(right), "corrected": len(fixed)}, "dropped": dict(dropped),
             "built": dict(built), "correction_share": round(built["corrected"] / len(examples), 4),
             "repeated": max(0, n_fixed - len(fixed)) + max(0, n_right - len(right)), "config": asdict(config)}
    return examples, stats


def _draw(pool: list, n: int, rng: random.Random) -> list:
    """``n`` items of ``pool``: each once in a seeded order, then again as often as ``n`` needs."""
    out = []
    while pool and len(out) < n:
        out += rng.sample(pool, min(len(pool), n - len(out)))
    return out


def train_self_talk(actor: Any, examples: Sequence[dict[str, Any]], config: SelfTalkConfig, out_dir: str | Path,
                    stats: dict[str, Any]) -> dict[str, Any]:
    """SFT of the actor's weights on the transcripts (prompt: the actor's solve prompt; target: the transcript)."""
    template = actor.template
    model, tokenizer = trainable(actor.backend)
    rows = [{"prompt": template.prompt(e["question"]), "completion": template.completion(e["lines"])}
            for e in examples]
    model.train()
    summary = sft_train(model, tokenizer, rows, config, out_dir, recipe=asdict(config),
                        log_every=max(1, config.train_steps // 4),
                        extra={"data": {k: v for k, v in stats.items() if k != "config"}})
    model.eval()
    return summary
