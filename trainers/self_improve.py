"""Self-improvement of the actor: vanilla rejection-sampling fine-tuning, and critique-in-the-loop (the paper's).

One iteration, read top to bottom in :meth:`SelfImprover.iteration`:

1. draw this iteration's training problems;
2. explore: spend the generation budget (``problems x samples_per_problem`` actor generations) on samples;
   ``critique`` keeps ``refine_share`` of the budget back, gives hard problems (low running pass rate) more
   samples when ``difficulty_aware``, and has the critic review every sample;
3. ``critique`` only: refine the flagged samples with the critique, hardest problems first, until the budget
   is spent (one generation per refinement, so the budget is exact);
4. keep the verified-correct solutions (originals and refinements), one copy of each distinct solution;
5. fine-tune the actor on them (the SFT machinery of the warm-up) and ship the new weights to the rollout
   workers;
6. measure: held-out greedy accuracy by difficulty, exploration efficiency (share of training problems with a
   correct trajectory), diversity (distinct correct solutions per problem), tokens, wall time; save a
   checkpoint and the state needed to resume.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from envs.math_env import EpisodeRecord
from envs.problems import Problem
from storage import atomic_write_json

__all__ = ["SelfImproveConfig", "SelfImprover", "allocate", "PassRates"]

ALGORITHMS = ("rft", "critique")


@dataclass
class SelfImproveConfig:
    algorithm: str = "critique"       # rft | critique
    critic: str = "model"             # the critic critique-in-the-loop uses (a name the rollout runner knows)
    iterations: int = 3
    problems_per_iteration: int = 256
    samples_per_problem: int = 4      # generation budget per iteration = problems_per_iteration * this
    refine_share: float = 0.25        # critique: the share of the budget kept for refinements
    difficulty_aware: bool = True     # critique: more samples and refinements for problems with low pass rates
    temperature: float = 1.0
    min_steps: int = 1
    max_steps: int = 8
    max_operand: int = 30
    max_value: int = 499
    sft_steps: int = 150
    batch_size: int = 32
    learning_rate: float = 5e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 320
    eval_problems_per_level: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown self-improvement algorithm {self.algorithm!r}; valid: {', '.join(ALGORITHMS)}")
        if not 0 <= self.refine_share < 1:
            raise ValueError(f"refine_share must be in [0, 1), got {self.refine_share}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SelfImproveConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown self_improve key(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)

    @property
    def budget(self) -> int:
        return self.problems_per_iteration * self.samples_per_problem


class PassRates:
    """Running pass rate by difficulty level (an exponential average over iterations; 0.5 until seen)."""

    def __init__(self, rates: dict[str, float] | None = None, momentum: float = 0.5):
        self.rates, self.momentum = dict(rates or {}), momentum

    def __getitem__(self, level: int) -> float:
        return self.rates.get(str(level), 0.5)

    def update(self, records: Sequence[EpisodeRecord]) -> None:
        by_level: dict[str, list[bool]] = defaultdict(list)
        for r in records:
            by_level[str(r.problem.difficulty)].append(_first_correct(r))
        for level, values in by_level.items():
            seen = sum(values) / len(values)
            old = self.rates.get(level)
            self.rates[level] = seen if old is None else self.momentum * old + (1 - self.momentum) * seen


def allocate(problems: Sequence[Problem], budget: int, rates: PassRates | None = None) -> list[int]:
    """Samples per problem summing to exactly ``budget``: equal shares, or (with ``rates``) shares that grow with
    how often the problem's level fails, every problem getting at least one."""
    n = len(problems)
    if budget < n:
        raise ValueError(f"a budget of {budget} cannot give {n} problems one sample each")
    if rates is None:
        return [budget // n + (i < budget % n) for i in range(n)]
    weights = [1.0 - rates[p.difficulty] + 0.05 for p in problems]
    spare = budget - n
    raw = [spare * w / sum(weights) for w in weights]
    counts = [1 + int(x) for x in raw]
    for i in sorted(range(n), key=lambda i: (-(raw[i] - int(raw[i])), i))[: budget - sum(counts)]:
        counts[i] += 1
    return counts


def _first_correct(record: EpisodeRecord) -> bool:
    """Was the sample right as drawn (before any refinement)?"""
    from rewards.verifier import verify_response

    if record.attempts:
        return verify_response("\n".join(record.attempts[0].steps), record.problem.answer).correct
    return record.correct


def _replicate(problems: Sequence[Problem], counts: Sequence[int], iteration: int) -> list[Problem]:
    return [replace(p, id=f"{p.id}#{iteration}.{j}", metadata={**p.metadata, "replica_of": p.id})
            for p, k in zip(problems, counts) for j in range(k)]


class SelfImprover:
    """Runs iterations against a rollout runner (in-process or Ray) and writes one folder per iteration."""

    def __init__(self, config: SelfImproveConfig, runner: Any, actor: Any, out_dir: str | Path, name: str = ""):
        self.config, self.runner, self.actor = config, runner, actor
        self.name = name or config.algorithm
        self.out_dir = Path(out_dir)
        self.rates = PassRates()
        self.history: list[dict[str, Any]] = []

    # -- the loop ------------------------------------------------------------------------------------------------

    def run(self, resume: bool = False, log: Any = print) -> list[dict[str, Any]]:
        start = 0
        if resume:
            start = self._resume()
            if start:
                log(f"[{self.name}] resumed after iteration {start}")
        elif self.out_dir.exists() and any(self.out_dir.glob("iter_*")):
            import shutil

            log(f"[{self.name}] starting over: removing the iterations in {self.out_dir} (resume=true continues them)")
            shutil.rmtree(self.out_dir)
        if start == 0 and not self.history:
            self.history.append(self._measure(0, None, time.perf_counter()))
        for i in range(start + 1, self.config.iterations + 1):
            summary = self.iteration(i)
            log(f"[{self.name}] iteration {i}: held-out {summary['heldout']['overall']:.3f}, explored "
                f"{summary['exploration']:.3f}, diversity {summary['diversity']:.2f}, {summary['generations']} "
                f"generations, {summary['seconds']} s" + (f"; {summary['restarts']}" if summary["restarts"] else ""))
        return self.history

    def iteration(self, i: int) -> dict[str, Any]:
        c, started = self.config, time.perf_counter()
        problems = self._problems(i)
        sampling = replace(self.actor.sampling, temperature=c.temperature, seed=c.seed * 1000 + i)
        restarts: list[str] = []

        # 2. explore
        aware = c.algorithm == "critique" and c.difficulty_aware
        sample_budget = c.budget if c.algorithm == "rft" else c.budget - round(c.budget * c.refine_share)
        counts = allocate(problems, sample_budget, self.rates if aware else None)
        critic = "none" if c.algorithm == "rft" else c.critic
        drawn = self.runner.rollout(_replicate(problems, counts, i), seed=c.seed * 1000 + i, sampling=sampling,
                                    env={"max_refinements": 0}, critic=critic)
        restarts += self.runner.last_restarts

        # 3. refine what the critic flags, hardest first, within the budget
        refined: list[EpisodeRecord] = []
        if c.algorithm == "critique":
            flagged = [r for r in drawn if r.attempts and not r.attempts[0].critique.is_correct]
            if aware:
                flagged.sort(key=lambda r: self.rates[r.problem.difficulty])
            flagged = flagged[: c.budget - len(drawn)]
            if flagged:
                refined = self.runner.rollout([r.problem for r in flagged], seed=c.seed * 1000 + i + 500,
                                              sampling=sampling, env={"max_refinements": 1},
                                              first={r.problem.id: r for r in flagged}, critic=critic)
                restarts += self.runner.last_restarts
        generations = len(drawn) + sum(max(0, len(r.generations) - 1) for r in refined)

        # 4. keep verified-correct, distinct solutions
        solutions: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        for r in drawn:
            if _first_correct(r):
                solutions[r.problem.metadata["replica_of"]].add(tuple(r.attempts[0].steps if r.attempts else r.steps))
        for r in refined:
            if r.correct:
                solutions[r.problem.metadata["replica_of"]].add(tuple(r.steps))
        by_id = {p.id: p for p in problems}
        examples = [(by_id[pid], steps) for pid in sorted(solutions) for steps in sorted(solutions[pid])]

        # 5. fine-tune and ship the weights
        self._train(examples, i)

        # 6. measure and save
        self.rates.update(drawn)
        summary = self._measure(i, {
            "problems": len(problems),
            "generations": generations,
            "budget": c.budget,
            "samples": len(drawn),
            "refinements": len(refined),
            "kept": len(examples),
            "exploration": round(len(solutions) / len(problems), 4),
            "exploration_before_refinement": round(
                len({r.problem.metadata["replica_of"] for r in drawn if _first_correct(r)}) / len(problems), 4),
            "diversity": round(sum(len(v) for v in solutions.values()) / len(problems), 4),
            "tokens": sum(len(g.completion_ids) for r in drawn + refined for g in r.generations),
            "restarts": restarts,
            "allocation_by_level": _by_level(problems, counts),
        }, started)
        self._save(i, summary)
        return summary

    # -- helpers -------------------------------------------------------------------------------------------------

    def _problems(self, i: int) -> list[Problem]:
        from envs.synthetic import SyntheticArithmetic

        c = self.config
        return SyntheticArithmetic(size=c.problems_per_iteration, min_steps=c.min_steps, max_steps=c.max_steps,
                                   max_operand=c.max_operand, max_value=c.max_value, split="train",
                                   seed=c.seed * 7919 + 100 + i)[:]

    def _train(self, examples: list[tuple[Problem, tuple[str, ...]]], i: int) -> None:
        from trainers.sft import sft_train

        template = self.actor.template
        rows = [{"prompt": template.prompt(p.question), "completion": template.completion(list(steps))}
                for p, steps in examples]
        if not rows:
            return
        rng = random.Random(self.config.seed * 1000 + i)
        rng.shuffle(rows)
        model, tokenizer = self.actor.backend.model, self.actor.backend.tokenizer
        model.train()
        c = self.config
        step = SimpleNamespace(seed=c.seed * 1000 + i, train_steps=c.sft_steps, batch_size=c.batch_size,
                               learning_rate=c.learning_rate, warmup_ratio=c.warmup_ratio,
                               weight_decay=c.weight_decay, max_length=c.max_length)
        sft_train(model, tokenizer, rows, step, self.out_dir / f"iter_{i}" / "model", recipe=asdict(c),
                  log_every=max(1, c.sft_steps))
        model.eval()
        self.runner.set_weights(model)

    def _measure(self, i: int, train: dict[str, Any] | None, started: float) -> dict[str, Any]:
        from envs.synthetic import SyntheticArithmetic
        from evaluation import accuracy_by_difficulty

        c = self.config
        levels = c.max_steps - c.min_steps + 1
        heldout = SyntheticArithmetic(size=c.eval_problems_per_level * levels, min_steps=c.min_steps,
                                      max_steps=c.max_steps, max_operand=c.max_operand, max_value=c.max_value,
                                      split="test", seed=c.seed + 13)[:]
        greedy = replace(self.actor.sampling, temperature=0.0)
        records = self.runner.rollout(heldout, seed=c.seed, sampling=greedy, env={"max_refinements": 0})
        acc = accuracy_by_difficulty(records)
        summary = {"iteration": i, "heldout": {"overall": acc["overall"]["accuracy"],
                                               "by_difficulty": {k: v["accuracy"] for k, v in acc["by_difficulty"].items()}},
                   **(train or {}), "seconds": round(time.perf_counter() - started, 1)}
        return summary

    def _save(self, i: int, summary: dict[str, Any]) -> None:
        self.history.append(summary)
        state = {"iteration": i, "config": asdict(self.config), "rates": self.rates.rates, "history": self.history}
        folder = self.out_dir / f"iter_{i}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "model").exists():  # nothing was kept to train on: the weights did not change
            self.actor.backend.model.save_pretrained(folder / "model")
            self.actor.backend.tokenizer.save_pretrained(folder / "model")
        atomic_write_json(folder / "state.json", state)  # written last: its presence marks the iteration complete

    def _resume(self) -> int:
        done = sorted((int(p.name.split("_")[1]), p) for p in self.out_dir.glob("iter_*") if (p / "state.json").exists())
        if not done:
            return 0
        last, folder = done[-1]
        state = json.loads((folder / "state.json").read_text())
        if state["config"] != asdict(self.config):
            raise ValueError(f"{folder}/state.json was written with another config; resume needs the same one")
        from transformers import AutoModelForCausalLM

        loaded = AutoModelForCausalLM.from_pretrained(folder / "model")
        self.actor.backend.model.load_state_dict(loaded.state_dict())
        self.runner.set_weights(self.actor.backend.model)
        self.rates = PassRates(state["rates"])
        self.history = state["history"]
        return last


def _by_level(problems: Sequence[Problem], counts: Sequence[int]) -> dict[str, float]:
    total: dict[str, list[int]] = defaultdict(list)
    for p, k in zip(problems, counts):
        total[str(p.difficulty)].append(k)
    return {level: round(sum(v) / len(v), 2) for level, v in sorted(total.items(), key=lambda kv: int(kv[0]))}
