"""The problem-source registry and the one seeding rule: every stage gets its problems from :func:`problems_for`.

A source entry builds problems for a split, a size, optional difficulty levels and a seed. Which problems a
stage sees is fixed by one rule, :func:`stage_seed`: the run's ``seed`` plus ``problems.seed`` plus the
purpose's offset in :data:`SEED_OFFSETS` (plus the iteration, for self-improvement's training draws), so two
purposes never share problems by accident and every set is reproducible from the config alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.problem import Problem, ProblemSource
from core.registry import Registry
from envs.datasets import load_gsm8k, load_jsonl, load_math
from envs.synthetic import SyntheticArithmetic

__all__ = ["PROBLEM_SOURCES", "ProblemsConfig", "SEED_OFFSETS", "SourceEntry", "build_source", "problems_for",
           "stage_seed"]


@dataclass
class ProblemsConfig:
    """The ``problems:`` config group; synthetic sources read the generator keys, file sources ``path``/``limit``."""

    name: str = "synthetic"
    split: str = "test"            # the split evaluation stages read
    train_split: str = "train"     # the split training stages read (MATH-500 ships only its test split)
    seed: int = 0                  # shifts every problem set of the run (stage_seed)
    size: int = 1000               # problems in the configured source (the environment's, when built alone)
    path: str | None = None        # file sources: a JSONL file (default: the data folder's)
    limit: int | None = None       # file sources: read at most this many rows
    min_steps: int = 1             # the difficulty levels: synthetic steps, GSM8K calculator steps, MATH level
    max_steps: int = 8
    max_operand: int = 30          # synthetic: largest number in the story
    max_value: int = 499           # synthetic: largest intermediate value
    distractors: int = 0           # synthetic: up to this many sentences about someone else per question

    @property
    def levels(self) -> list[int]:
        """The difficulty levels stages sample and report by (a file's rows outside them are not sampled per
        level)."""
        return list(range(self.min_steps, self.max_steps + 1))


# (config, split, size, levels, seed) -> problems; size None: all; levels None: every level mixed
Builder = Callable[[ProblemsConfig, str, "int | None", "Sequence[int] | None", int], list[Problem]]


@dataclass(frozen=True)
class SourceEntry:
    build: Builder
    generated: bool  # problems are generated on demand from programs: any number per level, mistakes injected
    # in code, scripted actors; file sources have what their rows have


def _synthetic(cfg: ProblemsConfig, split: str, size: int | None, levels: Sequence[int] | None, seed: int) -> list[Problem]:
    size = cfg.size if size is None else size
    make = lambda lo, hi, n, s: SyntheticArithmetic(size=n, min_steps=lo, max_steps=hi, max_operand=cfg.max_operand,  # noqa: E731
                                                    max_value=cfg.max_value, split=split, seed=s,
                                                    distractors=cfg.distractors)[:]
    if levels is None:
        return make(cfg.min_steps, cfg.max_steps, size, seed)
    return [p for level in levels for p in make(level, level, size, seed + level)]


def _from_file(loader: Callable[..., ProblemSource]) -> Builder:
    def build(cfg: ProblemsConfig, split: str, size: int | None, levels: Sequence[int] | None, seed: int) -> list[Problem]:
        rows = list(loader(cfg.path, split=split, limit=cfg.limit))
        if levels is None:  # a seeded sample of `size` rows, in file order
            if size is None or size >= len(rows):
                return rows
            return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), size))]
        out = []
        for level in levels:  # a seeded sample of `size` rows per difficulty level, in file order
            pool = [p for p in rows if p.difficulty == level]
            n = len(pool) if size is None else min(size, len(pool))
            out += [pool[i] for i in sorted(random.Random(seed + level).sample(range(len(pool)), n))]
        return out
    return build


PROBLEM_SOURCES: Registry[SourceEntry] = Registry("problem source")
PROBLEM_SOURCES.register("synthetic", SourceEntry(_synthetic, generated=True))
PROBLEM_SOURCES.register("gsm8k", SourceEntry(_from_file(load_gsm8k), generated=False))
PROBLEM_SOURCES.register("math", SourceEntry(_from_file(load_math), generated=False))
PROBLEM_SOURCES.register("jsonl", SourceEntry(_from_file(load_jsonl), generated=False))

# what each purpose adds to the run's seed; the values keep the problem sets of earlier releases
SEED_OFFSETS = {
    "eval": 0,            # eval_actor's held-out problems
    "critique_data": 1,   # AutoMathCritique's training problems
    "eval_critic": 7,     # eval_critic's held-out problems
    "calibrate": 11,      # calibrate_critic's training problems (per level)
    "heldout": 13,        # self-improvement's held-out problems
    "test_time": 100,     # eval_test_time's problems (per level)
    "self_improve": 100,  # self-improvement's training problems (plus the iteration)
    "refine_tune": 300,   # the warm-up's refine-tune: problems the actor samples for its own mistakes (per level)
    "final_heldout": 700,  # benchmarks/self_improvement.py --final-eval: the start and last checkpoints, per level
}


def stage_seed(run_seed: int, cfg: ProblemsConfig, purpose: str, iteration: int = 0) -> int:
    if purpose not in SEED_OFFSETS:
        raise KeyError(f"unknown problem purpose {purpose!r}; valid: {', '.join(SEED_OFFSETS)}")
    return run_seed + cfg.seed + SEED_OFFSETS[purpose] + iteration


def build_source(cfg: ProblemsConfig, split: str | None = None, size: int | None = None,
                 levels: Sequence[int] | None = None, seed: int | None = None) -> list[Problem]:
    """Problems from the configured source (its own split, size and seed unless given); ``split="train"`` reads
    the source's ``train_split``."""
    entry = PROBLEM_SOURCES[cfg.name]
    if split == "train":
        split = cfg.train_split
    return entry.build(cfg, split or cfg.split, size, levels, cfg.seed if seed is None else seed)


def problems_for(cfg: ProblemsConfig, purpose: str, run_seed: int, split: str, size: int | None = None,
                 levels: Sequence[int] | None = None, iteration: int = 0) -> list[Problem]:
    """A stage's problems: ``size`` in all (``levels`` None) or per level, seeded by :func:`stage_seed`."""
    return build_source(cfg, split, size, levels, stage_seed(run_seed, cfg, purpose, iteration))
