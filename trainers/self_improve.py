"""Self-improvement of the actor: vanilla rejection-sampling fine-tuning, and critique-in-the-loop (the paper's).

One iteration, read top to bottom in :meth:`SelfImprover.iteration`:

1. draw this iteration's training problems;
2. explore: spend the generation budget (``problems x samples_per_problem`` actor generations) on samples;
   ``critique`` keeps ``refine_share`` of the budget back, gives hard problems (low running pass rate) more
   samples when ``difficulty_aware``, and has the critic review every sample;
3. ``critique`` only: refine the flagged samples with the critique, hardest problems first, until the budget
   is spent (one generation per refinement, so the budget is exact);
4. keep the verified-correct solutions (originals and refinements), one copy of each distinct solution; a
   verified refinement is also kept as a refinement example (the critique in the prompt, the corrected steps
   as the target), so the actor keeps the refine skill it is asked to use;
5. fine-tune the actor on them (the SFT machinery of the warm-up) -- the current weights at a small learning
   rate, or (``restart="base"``, the paper's code) the starting weights on everything kept so far -- and ship
   the new weights to the rollout workers;
6. measure: held-out greedy accuracy by difficulty, exploration efficiency (share of training problems with a
   correct trajectory, whether ``keep`` kept it or not), diversity (distinct correct solutions per problem),
   tokens, wall time; save a checkpoint and the state needed to resume.

Training problems carry final answers only (the verifier is the sole judge, as with real data). With
``curriculum`` they are drawn from the levels up to the frontier + 1, the frontier being the highest level whose
running pass rate has reached ``curriculum_threshold`` (Lee et al. 2025, "Self-Improving Transformers Overcome
Easy-to-Hard and Length Generalization Challenges").
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from transformers import AutoModelForCausalLM

from agents.actor import Actor
from agents.backends import trainable
from core.critique import Critique
from core.episode import EpisodeRecord
from core.problem import Problem, replicate
from core.protocols import IterationSummary, RolloutRunner
from envs.registry import ProblemsConfig, problems_for
from evaluation.metrics import accuracy_by_difficulty
from rewards.answer import renumber_steps
from rewards.steps import check_step
from storage import atomic_directory, atomic_write_json, atomic_write_jsonl, read_jsonl
from trainers.sft import recipe_examples, refinement_example, sft_train, with_lora

__all__ = ["GRPOSettings", "PassRates", "ResumeMismatch", "SelfImproveConfig", "SelfImprover", "allocate", "keep_rule"]


@dataclass
class GRPOSettings:
    """The GRPO baseline's own settings (trainers/grpo.py)."""

    beta: float = 0.0                  # KL coefficient (0: no reference model, as in DAPO / Dr. GRPO)
    learning_rate: float = 1e-4
    critic_reward_weight: float = 0.5  # grpo_critic: weight of the critic's share of accepted steps
    max_completion_length: int = 160


@dataclass
class PPOSettings:
    """The RLlib PPO baseline's own settings (trainers/rllib_ppo.py): one action per token."""

    learning_rate: float = 1e-4
    batch_timesteps: int = 2048        # token steps per PPO update (train_batch_size_per_learner)
    minibatch: int = 256
    epochs: int = 1
    fragment: int = 256                # rollout_fragment_length (per env)
    envs: int = 8                      # envs stepped together (num_envs_per_env_runner): one forward pass serves all
    clip: float = 0.2
    entropy_coeff: float = 0.0
    gae_lambda: float = 0.95
    max_length: int = 192              # the observation's tokens (prompt, feedback and the solution so far)

    def __post_init__(self) -> None:
        for key in ("batch_timesteps", "minibatch", "epochs", "fragment", "envs", "max_length"):
            if getattr(self, key) < 1:
                raise ValueError(f"self_improve.ppo.{key} must be >= 1, got {getattr(self, key)}")


# which solutions with a right final answer are kept for training (``SelfImproveConfig.keep`` names one, or several
# joined by "+", all of which must pass): each rule reads the solution's steps and the critique the loop's critic
# gave that very solution (None where the algorithm has no critic in its loop, as RFT: the rule then passes it)
KEEP_RULES: dict[str, Callable[[Sequence[str], Critique | None], bool]] = {
    "answer": lambda steps, critique: True,
    "arithmetic": lambda steps, critique: all(check_step(step).ok for step in steps),
    "critic": lambda steps, critique: critique is None or critique.is_correct,
}


def keep_rule(name: str) -> Callable[[Sequence[str], Critique | None], bool]:
    """The ``keep`` setting as one predicate: every rule it names (``arithmetic+critic``) must pass."""
    rules = name.split("+")
    unknown = [r for r in rules if r not in KEEP_RULES]
    if unknown or not name:
        raise ValueError(f"self_improve.keep must be one of {', '.join(KEEP_RULES)} or several joined by '+' "
                         f"(arithmetic+critic), got {name!r}")
    chosen = [KEEP_RULES[r] for r in rules]
    return lambda steps, critique: all(rule(steps, critique) for rule in chosen)


@dataclass
class SelfImproveConfig:
    """The ``self_improve:`` config: every algorithm in ``algorithms`` runs from the same warm-up actor on the
    same problems and the same generation budget (``problems_per_iteration x samples_per_problem``)."""

    algorithms: list[str] = field(default_factory=lambda: ["critique", "rft"])  # names in trainers.registry
    critic: str = "model_likelihood"  # the critic in the loop (a name in critics.registry)
    actor: str | None = "checkpoints/tiny-actor-easy"  # the checkpoint every algorithm starts from (null: the run's)
    iterations: int = 2
    problems_per_iteration: int = 48
    samples_per_problem: int = 4      # generation budget per iteration = problems_per_iteration * this
    refine_share: float = 0.25        # critique: the share of the budget kept for refinements
    difficulty_aware: bool = True     # critique: more samples and refinements for problems with low pass rates
    curriculum: bool = True           # draw training problems from the levels up to the frontier + 1
    curriculum_start: int | None = 4  # the frontier before anything is measured (null: the lowest level)
    curriculum_threshold: float = 0.3  # a level joins the frontier once its running pass rate reaches this
    curriculum_window: int | None = 1  # draw from this many levels ending at the frontier + 1 (null: all below)
    accumulate: bool = True           # train on every row kept so far, not only this iteration's (restart=base: always)
    replay: int = 2048                # warm-up reference examples mixed into every fine-tune (the actor's recipe.json)
    refine_examples: bool = True      # critique: verified refinements also become refinement examples
    renumber_steps: bool = False      # kept solutions' step labels rewritten 1, 2, ... (rewards.answer.renumber_steps)
    keep: str = "answer"              # answer: a right final answer keeps a solution | arithmetic: and every step's
    # calculation is right (the step checker, no reference needed): a right answer reached by wrong steps is dropped
    # | critic: and the critic in the loop passed that solution (critique only; RFT has no critic) | a+b: both
    temperature: float = 1.0
    sft_steps: int = 180              # per iteration (``epochs`` set: derived from the examples instead)
    epochs: float | None = None       # passes over the iteration's examples (the paper: 1)
    restart: str = "continue"         # continue: train the current weights on this iteration's solutions | base:
    # retrain the starting weights every iteration on every solution kept so far (the paper's code)
    lora: bool = False                # HF actors: train a LoRA adapter (peft) and merge it after each iteration
    lora_r: int = 16
    lora_alpha: int = 32
    batch_size: int = 32
    learning_rate: float = 2e-4       # (self_improve=plain: 5e-4)
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 320
    eval_problems_per_level: int = 12
    eval_split: str = "test"          # the held-out measurement's split (train: for choosing settings)
    fork_from: str | None = None      # a run folder: start from its iterations 1..fork_iteration (copied) and go on
    fork_iteration: int = 0           # under this config, any setting changed (a branch of that run at that point)
    table_episodes: int = 40          # episodes per iteration (explored, held-out) logged as W&B tables
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)

    def __post_init__(self) -> None:
        if not 0 <= self.refine_share < 1:
            raise ValueError(f"refine_share must be in [0, 1), got {self.refine_share}")
        if self.restart not in ("continue", "base"):
            raise ValueError(f"restart must be 'continue' or 'base', got {self.restart!r}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if not 0 < self.curriculum_threshold <= 1:
            raise ValueError(f"curriculum_threshold must be in (0, 1], got {self.curriculum_threshold}")
        if self.curriculum_window is not None and self.curriculum_window < 1:
            raise ValueError(f"curriculum_window must be >= 1 or null, got {self.curriculum_window}")
        keep_rule(self.keep)
        if self.eval_split not in ("test", "train"):
            raise ValueError(f"eval_split must be 'test' or 'train', got {self.eval_split!r}")
        if self.fork_from is not None and not 1 <= self.fork_iteration <= self.iterations:
            raise ValueError(f"fork_iteration must be in [1, iterations={self.iterations}] with fork_from, "
                             f"got {self.fork_iteration}")

    @property
    def budget(self) -> int:
        return self.problems_per_iteration * self.samples_per_problem


class PassRates:
    """Running pass rate by difficulty level (an exponential average over iterations; 0.5 until seen)."""

    def __init__(self, rates: dict[str, float] | None = None, momentum: float = 0.5):
        self.rates, self.momentum = dict(rates or {}), momentum

    def __getitem__(self, level: int) -> float:
        return self.rates.get(str(level), 0.5)

    def seen(self, level: int) -> bool:
        return str(level) in self.rates

    def frontier(self, levels: Sequence[int], start: int, threshold: float) -> int:
        """The highest level, from ``start`` up, such that it and every level below it down to ``start`` have
        reached ``threshold`` (``start`` itself counts as reached)."""
        frontier = start
        for level in sorted(lv for lv in levels if lv > start):
            if not (self.seen(level) and self[level] >= threshold):
                break
            frontier = level
        return frontier

    def update(self, records: Sequence[EpisodeRecord]) -> None:
        by_level: dict[str, list[bool]] = defaultdict(list)
        for r in records:
            by_level[str(r.problem.difficulty)].append(r.first_correct)
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


class SelfImprover:
    """Runs iterations of one algorithm (``rft`` | ``critique``) against a rollout runner (in-process or Ray)
    and writes one folder per iteration. Subclasses (GRPO) replace :meth:`iteration` and share the rest."""

    def __init__(self, config: SelfImproveConfig, runner: RolloutRunner, actor: Actor, out_dir: str | Path,
                 problems: ProblemsConfig, algorithm: str = "critique", seed: int = 0,
                 context: Mapping[str, Any] | None = None):
        """``context``: the settings outside ``config`` that decide an iteration's numbers (the critic in the loop,
        the environment, the actor's sampling), JSON-able; a resume must find them unchanged too."""
        self.config, self.runner, self.actor = config, runner, actor
        self.problems, self.seed = problems, seed
        self.context = json.loads(json.dumps(dict(context or {})))
        self.name = algorithm
        self.out_dir = Path(out_dir)
        self.rates = PassRates()
        self.history: list[IterationSummary] = []
        self.kept: list[dict[str, Any]] = []  # every SFT row kept so far (restart="base" and accumulate train on them)
        self._base: dict[str, Any] | None = None  # the starting weights (restart="base")
        # called with ("iter_<i>/explore" | "iter_<i>/heldout", records) as each set is rolled out (W&B tables)
        self.on_records: Callable[[str, Sequence[EpisodeRecord]], None] | None = None

    # -- the loop ------------------------------------------------------------------------------------------------

    def run(self, resume: bool = False, log: Any = print) -> list[IterationSummary]:
        start = 0
        if "critic" in self.config.keep.split("+") and self.name == "rft":
            log(f"[{self.name}] keep={self.config.keep}: {self.name} has no critic in its loop, so the critic rule "
                "passes every solution it verifies")
        if self.config.restart == "base":  # the starting weights, before a resume loads later ones
            model = trainable(self.actor.backend)[0]
            self._base = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if not resume and self.out_dir.exists() and any(self.out_dir.glob("iter_*")):
            log(f"[{self.name}] starting over: removing the iterations in {self.out_dir} (resume=true continues them)")
            shutil.rmtree(self.out_dir)
        if self.config.fork_from:
            self._fork()
            log(f"[{self.name}] forked from iteration {self.config.fork_iteration} of {self.config.fork_from}")
        if resume or self.config.fork_from:
            start = self._resume()
            if start:
                log(f"[{self.name}] resumed after iteration {start}")
        if start == 0 and not self.history:
            self.history.append(self._measure(0, {}, time.perf_counter()))
        for i in range(start + 1, self.config.iterations + 1):
            s = self.iteration(i)
            log(f"[{self.name}] iteration {i}: held-out {s.heldout['overall']:.3f}, explored {s.exploration:.3f}, "
                f"diversity {s.diversity:.2f}, {s.generations} generations, {s.seconds} s"
                + (f"; {s.restarts}" if s.restarts else ""))
        return self.history

    def iteration(self, i: int) -> IterationSummary:
        c, started, critique = self.config, time.perf_counter(), self.name == "critique"
        problems = self._problems(i)
        sampling = replace(self.actor.sampling, temperature=c.temperature, seed=self.seed * 1000 + i)
        restarts: list[str] = []

        # 2. explore
        aware = critique and c.difficulty_aware
        sample_budget = c.budget - round(c.budget * c.refine_share) if critique else c.budget
        counts = allocate(problems, sample_budget, self.rates if aware else None)
        critic = c.critic if critique else "none"
        drawn = self.runner.rollout(replicate(problems, counts, tag=f"{i}."), seed=self.seed * 1000 + i,
                                    sampling=sampling, env={"max_refinements": 0}, critic=critic)
        restarts += self.runner.last_restarts

        # 3. refine what the critic flags, hardest first, within the budget
        refined: list[EpisodeRecord] = []
        if critique:
            flagged = [r for r in drawn if r.attempts and not r.attempts[0].critique.is_correct]
            if aware:
                flagged.sort(key=lambda r: self.rates[r.problem.difficulty])
            flagged = flagged[: c.budget - len(drawn)]
            if flagged:
                refined = self.runner.rollout([r.problem for r in flagged], seed=self.seed * 1000 + i + 500,
                                              sampling=sampling, env={"max_refinements": 1},
                                              first={r.problem.id: r for r in flagged}, critic=critic)
                restarts += self.runner.last_restarts
        generations = len(drawn) + sum(max(0, len(r.generations) - 1) for r in refined)
        self._report(f"iter_{i}/explore", drawn + refined)

        # 4. keep verified-correct, distinct solutions (and, from refinements, refinement examples)
        keeps = keep_rule(c.keep)
        solutions: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        verified: dict[str, set[tuple[str, ...]]] = defaultdict(set)  # what exploration found, before ``keep``
        refines: dict[tuple[str, tuple[str, ...]], EpisodeRecord] = {}
        # each verified solution, with the attempt whose critique judged it: a sample's first, a refinement's last
        found = [(r, r.first_steps, r.attempts[0] if r.attempts else None, False) for r in drawn if r.first_correct]
        found += [(r, r.steps, r.attempts[-1], True) for r in refined if r.correct]
        for r, steps, attempt, refinement in found:
            pid, steps = r.problem.metadata["replica_of"], tuple(steps)
            verified[pid].add(steps)
            if keeps(steps, attempt.critique if critique and attempt else None):
                solutions[pid].add(steps)
                if refinement:
                    refines.setdefault((pid, steps), r)
        by_id = {p.id: p for p in problems}
        rows = [self._row(by_id[pid], steps) for pid in sorted(solutions) for steps in sorted(solutions[pid])]
        if c.refine_examples:
            rows += [self._refine_row(by_id[pid], r) for (pid, _), r in sorted(refines.items(), key=lambda kv: kv[0])]
        atomic_write_jsonl(self.out_dir / f"iter_{i}" / "kept.jsonl", rows)

        # 5. fine-tune and ship the weights
        self._train(rows, i)

        # 6. measure and save
        self.rates.update(drawn)
        summary = self._measure(i, {
            "problems": len(problems), "generations": generations, "budget": c.budget,
            "exploration": round(len(verified) / len(problems), 4),
            "diversity": round(sum(len(v) for v in verified.values()) / len(problems), 4),
            "tokens": sum(len(g.completion_ids) for r in drawn + refined for g in r.generations),
            "restarts": restarts,
            "extra": {
                "samples": len(drawn), "refinements": len(refined),
                "kept": sum(row["kind"] == "solve" for row in rows),
                "kept_problems": round(len(solutions) / len(problems), 4),  # exploration after ``keep``
                "refine_examples": sum(row["kind"] == "refine" for row in rows),
                "levels": sorted({p.difficulty for p in problems}),
                "exploration_before_refinement": round(
                    len({r.problem.metadata["replica_of"] for r in drawn if r.first_correct}) / len(problems), 4),
                "allocation_by_level": _by_level(problems, counts),
            },
        }, started)
        self._save(i, summary)
        return summary

    # -- helpers -------------------------------------------------------------------------------------------------

    def _problems(self, i: int) -> list[Problem]:
        c = self.config
        if not c.curriculum:
            return problems_for(self.problems, "self_improve", self.seed, "train", size=c.problems_per_iteration,
                                iteration=i)
        levels = self.problems.levels
        start = levels[0] if c.curriculum_start is None else c.curriculum_start
        frontier = self.rates.frontier(levels, start, c.curriculum_threshold)
        lowest = levels[0] if c.curriculum_window is None else frontier + 2 - c.curriculum_window
        chosen = [lv for lv in levels if lowest <= lv <= frontier + 1] or [levels[-1]]
        per_level = -(-c.problems_per_iteration // len(chosen))
        drawn = problems_for(self.problems, "self_improve", self.seed, "train", size=per_level, levels=chosen,
                             iteration=i)
        return random.Random(self.seed * 1000 + i).sample(drawn, min(len(drawn), c.problems_per_iteration))

    def _steps(self, steps: Sequence[str]) -> list[str]:
        return renumber_steps(steps) if self.config.renumber_steps else list(steps)

    def _row(self, problem: Problem, steps: Sequence[str]) -> dict[str, Any]:
        t, steps = self.actor.template, self._steps(steps)
        return {"id": problem.id, "kind": "solve", "prompt": t.prompt(problem.question),
                "completion": t.completion(list(steps)), "steps": list(steps)}

    def _refine_row(self, problem: Problem, record: EpisodeRecord) -> dict[str, Any]:
        """The refinement that reached the answer: the prompt it was given (critique and kept steps), its steps,
        and the trajectory itself (the flawed sample and the critic's critique of it) for the self-talk data."""
        attempt = next(a for a in reversed(record.attempts) if a.cut_at is not None)
        steps = self._steps(record.steps)
        prompt, completion = refinement_example(self.actor.template, problem.question, attempt, steps)
        return {"id": problem.id, "kind": "refine", "prompt": prompt, "completion": completion,
                "steps": steps, "question": problem.question, "flawed": list(attempt.steps),
                "critique": attempt.critique.render()}

    def _train(self, rows: list[dict[str, Any]], i: int) -> None:
        """Fine-tune on this iteration's rows, or (``restart="base"``) retrain the starting weights on every row
        kept so far; a LoRA adapter is merged back into the weights the rollouts use."""
        c = self.config
        model, tokenizer = trainable(self.actor.backend)
        self.kept += rows
        if c.restart == "base" or c.accumulate:
            rows = self.kept
        if c.restart == "base":
            model.load_state_dict(self._base)
        rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows] + self._replay(i)
        if not rows:
            return
        rng = random.Random(self.seed * 1000 + i)
        rng.shuffle(rows)
        steps = c.sft_steps if c.epochs is None else max(1, math.ceil(c.epochs * len(rows) / c.batch_size))
        trained = model
        if c.lora:
            trained = with_lora(model, c.lora_r, c.lora_alpha)
        trained.train()
        step = SimpleNamespace(seed=self.seed * 1000 + i, train_steps=steps, batch_size=c.batch_size,
                               learning_rate=c.learning_rate, warmup_ratio=c.warmup_ratio,
                               weight_decay=c.weight_decay, max_length=c.max_length)
        sft_train(trained, tokenizer, rows, step, self.out_dir / f"iter_{i}" / "model", recipe=self._state_config(),
                  log_every=max(1, steps))
        model.eval()
        self.runner.set_weights(model)

    def _replay(self, i: int) -> list[dict[str, str]]:
        """``replay`` reference examples from the actor's own warm-up recipe (its levels, its refinement share),
        drawn afresh each iteration: the labelled data the warm-up had, kept in the mix against forgetting."""
        if not self.config.replay:
            return []
        try:
            return recipe_examples(str(getattr(self.actor.backend, "path", "")), self.config.replay, 7919 * i)[1]
        except ValueError as err:
            raise ValueError(f"self_improve.{err}") from err

    def _measure(self, i: int, fields: dict[str, Any], started: float) -> IterationSummary:
        heldout = problems_for(self.problems, "heldout", self.seed, self.config.eval_split,
                               size=self.config.eval_problems_per_level * len(self.problems.levels))
        greedy = replace(self.actor.sampling, temperature=0.0)
        records = self.runner.rollout(heldout, seed=self.seed, sampling=greedy, env={"max_refinements": 0})
        self._report(f"iter_{i}/heldout", records)
        acc = accuracy_by_difficulty(records)
        return IterationSummary(i, {"overall": acc["overall"]["accuracy"],
                                    "by_difficulty": {k: v["accuracy"] for k, v in acc["by_difficulty"].items()}},
                                round(time.perf_counter() - started, 1), **fields)

    def _report(self, key: str, records: Sequence[EpisodeRecord]) -> None:
        if self.on_records is not None:
            self.on_records(key, records)

    def _state_config(self) -> dict[str, Any]:
        """What a resumed run must match: the algorithm, its settings, the problems and the seed."""
        return {"algorithm": self.name, **asdict(self.config), "problems": asdict(self.problems), "seed": self.seed,
                "context": self.context}

    def _save(self, i: int, summary: IterationSummary) -> None:
        self.history.append(summary)
        state = {"iteration": i, "config": self._state_config(), "rates": self.rates.rates,
                 "history": [h.to_dict() for h in self.history]}
        folder = self.out_dir / f"iter_{i}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "model").exists():  # nothing was kept to train on: the weights did not change
            model, tokenizer = trainable(self.actor.backend)
            model.save_pretrained(folder / "model")
            tokenizer.save_pretrained(folder / "model")
        atomic_write_json(folder / "state.json", state)  # written last: its presence marks the iteration complete

    def _resume(self) -> int:
        """The last finished iteration up to ``iterations`` (0: none), its weights, pass rates, history and kept
        rows loaded. ``iterations`` alone may differ from the run's: nothing in an iteration depends on how many
        follow, so a finished run is extended (or an earlier iteration's state taken up) by changing it."""
        done = [(n, p) for n, p in finished_iterations(self.out_dir) if n <= self.config.iterations]
        if not done:
            return 0
        last, folder = done[-1]
        state = json.loads((folder / "state.json").read_text())
        ignore = lambda config: {k: v for k, v in config.items() if k != "iterations"}  # noqa: E731
        defaults = {**asdict(SelfImproveConfig()), "problems": asdict(ProblemsConfig())}
        current = _known_to(state["config"], json.loads(json.dumps(self._state_config())), defaults)
        if "context" not in state["config"]:  # written before the context was recorded: not checked
            current.pop("context")
        changed = _differences(ignore(state["config"]), ignore(current))
        if changed and last > (self.config.fork_iteration if self.config.fork_from else 0):  # a fork's own iterations
            raise ResumeMismatch(f"{folder}/state.json was written with another config ({'; '.join(changed)}); "
                                 "resume needs the same one (only self_improve.iterations may change)")
        loaded = AutoModelForCausalLM.from_pretrained(folder / "model")
        model, _ = trainable(self.actor.backend)
        model.load_state_dict(loaded.state_dict())
        self.runner.set_weights(model)
        self.rates = PassRates(state["rates"])
        self.history = [IterationSummary.from_dict(h) for h in state["history"]]
        if self.config.restart == "base" or self.config.accumulate:  # every row kept so far, for the next fine-tune
            self.kept = [row for n, _ in done for _, row in read_jsonl(self.out_dir / f"iter_{n}" / "kept.jsonl")]
        return last

    def _fork(self) -> None:
        """Copy this algorithm's iterations 1..fork_iteration of the run in ``fork_from`` into this run's folder
        (each whole or not at all; files hard-linked where the file system allows, as nothing rewrites them), for
        :meth:`_resume` to take up: what they kept, their weights, pass rates and history are the branch's past,
        and its later iterations run under this config."""
        source = Path(self.config.fork_from) / "self_improve" / self.name
        k = self.config.fork_iteration
        if not (source / f"iter_{k}" / "state.json").exists():
            raise ResumeMismatch(f"self_improve.fork_from: {source}/iter_{k} is not a finished iteration of "
                                 f"{self.name} (fork_iteration={k})")
        for n in range(1, k + 1):
            target = self.out_dir / f"iter_{n}"
            if not (target / "state.json").exists():
                with atomic_directory(target) as tmp:
                    shutil.copytree(source / f"iter_{n}", tmp, dirs_exist_ok=True, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class ResumeMismatch(ValueError):
    """A run asked to resume under settings other than those its saved iterations were made with."""


def finished_iterations(out_dir: Path) -> list[tuple[int, Path]]:
    """``(iteration, folder)`` of every iteration of an algorithm's run that finished (its state.json written)."""
    return sorted((int(p.name.split("_")[1]), p) for p in Path(out_dir).glob("iter_*") if (p / "state.json").exists())


def _known_to(stored: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``current`` without the keys ``stored`` lacks whose values are their defaults: a key the config gained after
    a run was written, at its default, is the setting that run had."""
    out = {}
    for key, value in current.items():
        if key not in stored:
            if key in defaults and value == json.loads(json.dumps(defaults[key])):
                continue
        elif isinstance(value, dict) and isinstance(stored[key], dict):
            value = _known_to(stored[key], value, defaults.get(key) or {})
        out[key] = value
    return out


def _differences(stored: Any, current: Any, key: str = "") -> list[str]:
    """Each dotted key whose value differs, with both values (a key one side lacks counts as changed)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        return [d for k in sorted(set(stored) | set(current), key=str)
                for d in _differences(stored.get(k, "(unset)"), current.get(k, "(unset)"), f"{key}.{k}" if key else k)]
    return [] if stored == current else [f"{key}: {stored!r} then, {current!r} now"]


def _by_level(problems: Sequence[Problem], counts: Sequence[int]) -> dict[str, float]:
    total: dict[str, list[int]] = defaultdict(list)
    for p, k in zip(problems, counts):
        total[str(p.difficulty)].append(k)
    return {level: round(sum(v) / len(v), 2) for level, v in sorted(total.items(), key=lambda kv: int(kv[0]))}
