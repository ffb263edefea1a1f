"""The self-talk model: one model that writes a step, checks it, fixes what it flags, and answers.

Its training transcripts come from what the pipeline already made: ``critique_data``'s rows (a flawed
response, its step-level critique and the corrected solution) and critique-in-the-loop trajectories from
``self_improve`` (a sample, the critic's critique of it, the verified refinement; :func:`trajectory_rows`).
A flawed one becomes a transcript whose check catches the first error and whose fix replaces it
(``critics/self_talk.py: corrected_transcript``); a right response and its critique become one whose every
check passes. ``correction_share`` of the transcripts carry a correction. It is trained with the warm-up's SFT
machinery from the run's actor.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.backends import trainable
from core.critique import Critique, CritiqueParseError
from critics.paper_format import from_refinement_row, read_rows
from critics.self_talk import correct_transcript, corrected_transcript
from envs.datasets import data_path
from rewards.answer import solution_lines
from trainers.sft import sft_train, with_lora

__all__ = ["SOURCES", "SelfTalkConfig", "build_transcripts", "paper_rows", "train_self_talk", "trajectory_rows"]

# where transcripts come from: the run's AutoMathCritique rows, the critique loop's verified refinements, and
# released refinement rows in the paper's format (``self_talk.rows``)
SOURCES = ("critique_data", "self_improve", "rows")
_CALC_NOTE_RE = re.compile(r"<<[^<>]*>>")


@dataclass
class SelfTalkConfig:
    """The ``self_talk:`` config: data, training and evaluation of the self-talk model."""

    seed: int = 0
    sources: list[str] = field(default_factory=lambda: ["critique_data", "self_improve"])  # what becomes transcripts
    rows: str | None = None         # sources=[..., rows]: a file of the paper's refinement rows (data://... allowed)
    examples: int = 600             # transcripts to train on (drawn from the pools, with repetition if short)
    correction_share: float = 0.5   # share of them with a self-correction
    train_steps: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 448
    max_new_tokens: int = 320       # a transcript is about twice its solution's length
    lora: bool = False              # HF actors: train a LoRA adapter (peft), merged into the saved weights
    lora_r: int = 16
    lora_alpha: int = 32
    problems_per_level: int | None = None  # evaluation problems per level (null: test_time's, the same problems)

    def __post_init__(self) -> None:
        if not 0 <= self.correction_share <= 1:
            raise ValueError(f"correction_share must be in [0, 1], got {self.correction_share}")
        unknown = [x for x in self.sources if x not in SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"sources must be a non-empty list of {list(SOURCES)}, got {self.sources}")
        if "rows" in self.sources and not self.rows:
            raise ValueError("sources has rows but self_talk.rows names no file")
        if self.examples < 1:
            raise ValueError(f"examples must be >= 1, got {self.examples}")


def build_transcripts(rows: Sequence[dict[str, Any]], config: SelfTalkConfig) -> tuple[list[dict[str, Any]], dict]:
    """Transcripts from critique rows (``question``, ``steps``, ``critique``, ``is_correct``, ``answer_correct``,
    ``reference``, optionally ``origin``: the source it came from): ``(examples, stats)``; every row is used or
    counted as dropped with its reason, and the stats say how many each source gave."""
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
    pools = Counter((row.get("origin", "critique_data"), kind) for kind, pool in (("correct", right), ("corrected", fixed))
                    for row, _ in pool)
    rng = random.Random(config.seed)
    n_fixed = round(config.examples * config.correction_share) if fixed else 0
    n_right = config.examples - n_fixed if right else 0
    if not right and not fixed:
        raise ValueError(f"no self-talk transcript could be built from {len(rows)} critique rows: {dict(dropped)}")
    chosen = [("corrected", x) for x in _draw(fixed, n_fixed, rng)] + [("correct", x) for x in _draw(right, n_right, rng)]
    rng.shuffle(chosen)
    examples = [{"kind": kind, "question": row["question"], "lines": lines} for kind, (row, lines) in chosen]
    built = Counter(e["kind"] for e in examples)
    by_source = {src: {"rows": sum(r.get("origin", "critique_data") == src for r in rows),
                       "correct": pools[src, "correct"], "corrected": pools[src, "corrected"]}
                 for src in dict.fromkeys([*config.sources, *(r.get("origin", "critique_data") for r in rows)])}
    stats = {"rows": len(rows), "pools": {"correct": len(right), "corrected": len(fixed)}, "by_source": by_source,
             "dropped": dict(dropped),
             "built": dict(built), "correction_share": round(built["corrected"] / len(examples), 4),
             "repeated": max(0, n_fixed - len(fixed)) + max(0, n_right - len(right)), "config": asdict(config)}
    return examples, stats


def trajectory_rows(kept: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Critique rows from the critique loop's kept rows (``self_improve/<algorithm>/iter_*/kept.jsonl``): each
    verified refinement with its trajectory (``flawed``: the sample, ``critique``: the critic's critique of it,
    ``steps``: the refinement that reached the answer) is a flawed response with its corrected solution."""
    return [{"question": r["question"], "steps": r["flawed"], "critique": r["critique"], "is_correct": False,
             "answer_correct": False, "reference": r["steps"], "origin": "self_improve"}
            for r in kept if r.get("kind") == "refine" and "flawed" in r]


def paper_rows(path: str) -> list[dict[str, Any]]:
    """Critique rows from the paper's released refinement rows: the attempt as its critique quotes it (calculator
    notes dropped, as the quotes drop them) with its answer line, and the refinement without the opening lines
    it shares with the attempt that the critique does not judge, or that only announce a solution ("Let's break it
    down step by step:"). A row that is not a refinement row is an error that
    names it."""
    out = []
    for i, row in enumerate(read_rows(data_path(path), "self_talk.rows")):
        r = from_refinement_row(row, i)
        unjudged = {line for line in r.attempt[:-1] if _CALC_NOTE_RE.sub("", line).strip() not in r.quoted}
        text = r.refinement if "\n" in r.refinement else r.refinement.replace("\\n", "\n")  # rows with escaped newlines
        refinement = solution_lines(text)
        while refinement and (refinement[0] in unjudged or _is_opening(refinement[0])):
            refinement = refinement[1:]
        out.append({"question": r.question, "steps": [*r.quoted, r.attempt[-1]], "critique": r.critique.render(),
                    "is_correct": r.critique.is_correct, "answer_correct": r.critique.final_answer_correct is not False,
                    "reference": refinement, "origin": "rows"})
    return out


def _is_opening(line: str) -> bool:
    """A line that opens a solution without a step of it ("Let's solve the problem step by step:")."""
    return line.rstrip().endswith(":") and not any(ch.isdigit() for ch in line)


def _draw(pool: list, n: int, rng: random.Random) -> list:
    """``n`` items of ``pool``: each once in a seeded order, then again as often as ``n`` needs."""
    out = []
    while pool and len(out) < n:
        out += rng.sample(pool, min(len(pool), n - len(out)))
    return out


def train_self_talk(actor: Any, examples: Sequence[dict[str, Any]], config: SelfTalkConfig, out_dir: str | Path,
                    stats: dict[str, Any]) -> dict[str, Any]:
    """SFT of the actor's weights on the transcripts (prompt: the actor's solve prompt, through the chat template
    for an instruct model; target: the transcript); ``lora`` trains an adapter and merges it into the weights."""
    template = actor.template.with_self_talk()
    model, tokenizer = trainable(actor.backend)
    rows = [{"prompt": template.prompt(e["question"]), "completion": template.completion(e["lines"])}
            for e in examples]
    trained = with_lora(model, config.lora_r, config.lora_alpha) if config.lora else model
    trained.train()
    summary = sft_train(trained, tokenizer, rows, config, out_dir, recipe=asdict(config),
                        log_every=max(1, config.train_steps // 4),
                        extra={"data": {k: v for k, v in stats.items() if k != "config"}})
    model.eval()
    return summary
