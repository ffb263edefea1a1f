"""Step many ``MathReasoningEnv``s together so one ``generate`` (and one batched critique) serves them all.

Slots are refilled as episodes finish (continuous batching), so a slow long episode never holds the others up.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from core.episode import EpisodeRecord
from core.problem import ListProblemSource, Problem
from core.progress import progress
from core.protocols import Critic, Policy
from envs.math_env import EnvConfig, MathReasoningEnv

__all__ = ["PresampledActor", "RolloutStats", "rollout"]


@dataclass
class RolloutStats:
    episodes: int = 0
    turns: int = 0
    generate_calls: int = 0
    critique_calls: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0


_frozen = {"depth": 0}
_frozen_lock = threading.Lock()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects alive before a rollout (models, tokenizers, sympy's caches: ~half a million) out of the
    garbage collector's full passes while it runs; each such pass would scan them all (0.15-0.2 s on 2 cores, about
    every other rollout of 512 episodes). Objects made during the rollout are collected as usual, and the heap is
    unfrozen when the outermost rollout ends (rollouts may nest or run in threads)."""
    with _frozen_lock:
        if _frozen["depth"] == 0:
            gc.freeze()
        _frozen["depth"] += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen["depth"] -= 1
            if _frozen["depth"] == 0:
                gc.unfreeze()


@frozen_heap()
def rollout(problems: Sequence[Problem], actor: Policy, critic: Critic, env_config: EnvConfig | None = None,
            batch_size: int = 64, seed: int = 0, stats: RolloutStats | None = None) -> list[EpisodeRecord]:
    """Run one episode per problem; returns their records in the order of ``problems``.

    ``actor`` needs ``act_batch(observations, infos) -> actions`` (a model :class:`agents.Actor`); anything with
    only ``act`` is stepped one environment at a time.
    """
    if not problems:
        return []
    stats = stats if stats is not None else RolloutStats()
    start = time.perf_counter()
    source = ListProblemSource(problems, name="rollout")
    envs = [MathReasoningEnv(source, critic, env_config) for _ in range(min(batch_size, len(problems)))]
    records: list[EpisodeRecord | None] = [None] * len(problems)
    slot_problem: list[int | None] = [None] * len(envs)
    state: list[tuple[dict, dict] | None] = [None] * len(envs)
    next_problem = 0

    def refill(slot: int) -> None:
        nonlocal next_problem
        if next_problem < len(problems):
            state[slot] = envs[slot].reset(seed=seed + next_problem, options={"problem": problems[next_problem]})
            slot_problem[slot] = next_problem
            next_problem += 1
        else:
            state[slot], slot_problem[slot] = None, None

    for slot in range(len(envs)):
        refill(slot)
    bar = progress(len(problems), "episodes")
    batched = hasattr(actor, "act_batch")
    while any(s is not None for s in state):
        live = [i for i, s in enumerate(state) if s is not None]
        observations, infos = [state[i][0] for i in live], [state[i][1] for i in live]
        if batched:
            actions = actor.act_batch(observations, infos)
            stats.generate_calls += 1
        else:
            actions = [actor.act(o, i) for o, i in zip(observations, infos)]
        pendings = [envs[i].submit(a) for i, a in zip(live, actions)]
        need = [j for j, p in enumerate(pendings) if p.needs_critique]
        critiques: list = [None] * len(live)
        if need:
            done = critic.critique_batch([envs[live[j]].record.problem for j in need],
                                         [pendings[j].steps for j in need])
            stats.critique_calls += 1
            for j, c in zip(need, done):
                critiques[j] = c
        stats.turns += len(live)
        for j, slot in enumerate(live):
            observation, _, terminated, truncated, info = envs[slot].resolve(pendings[j], critiques[j])
            if terminated or truncated:
                record = info["record"]
                records[slot_problem[slot]] = record
                stats.episodes += 1
                stats.completion_tokens += sum(len(g.completion_ids) for g in record.generations)
                bar.update(1)
                refill(slot)
            else:
                state[slot] = (observation, info)
    bar.close()
    stats.seconds += time.perf_counter() - start
    return records  # type: ignore[return-value]


class PresampledActor:
    """Plays given first solutions, then lets a model actor refine them: every critic sees the same samples.

    ``first`` maps a problem id to the record it was sampled in; its solution is played as the first action and
    its generation is copied into the new record, so token counts stay aligned with the rounds.
    """

    def __init__(self, first: dict[str, EpisodeRecord], actor: Any):
        self.first, self.actor = first, actor

    def act(self, observation: dict[str, str], info: dict[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: Sequence[dict[str, str]], infos: Sequence[dict[str, Any]]) -> list[str]:
        actions: list[str | None] = [None] * len(infos)
        ask = []
        for i, info in enumerate(infos):
            record = info["record"]
            if not record.attempts and not record.steps and record.problem.id in self.first:
                sampled = self.first[record.problem.id]
                record.generations.extend(sampled.generations[:1])
                actions[i] = "\n".join(sampled.first_steps)
            else:
                ask.append(i)
        if ask:
            for i, action in zip(ask, self.actor.act_batch([observations[i] for i in ask], [infos[i] for i in ask])):
                actions[i] = action
        return actions  # type: ignore[return-value]
