"""Rollouts spread over Ray workers, each holding an actor model, its critics and its environments.

The driver sends new actor weights through the object store (``ray.put`` once, every worker loads the same
reference), splits the problems into one contiguous chunk per worker, and gathers the episode records. A worker
that dies mid-iteration is replaced, given the current weights, and its chunk runs again: the iteration still
completes and ``last_restarts`` says so. The same code joins an existing cluster (``address``) and places workers
on GPUs (``num_gpus_per_worker``); by default it starts a local one on this machine.

``ray`` is imported inside the functions that need it: a heavy optional dependency, so the in-process runner
and everything that imports this module work without starting (or even importing) Ray.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.actor import Actor, ActorConfig, build_actor
from agents.backends import trainable
from core.config import config_from_dict
from core.episode import EpisodeRecord
from core.problem import Problem
from core.protocols import Critic
from core.sampling import SamplingParams
from critics.registry import CriticConfig, build_critic
from envs.math_env import EnvConfig
from rollout.loop import PresampledActor, rollout

__all__ = ["RayConfig", "RayRolloutPool", "LocalRolloutRunner", "WorkerSpec", "init_ray", "run_chunk", "LOCAL_ONLY_BOOTSTRAP"]

log = logging.getLogger(__name__)

# Ray's usage-stats module probes cloud metadata addresses unless a bootstrap config names a local provider.
LOCAL_ONLY_BOOTSTRAP = Path.home() / "ray_bootstrap_config.yaml"


@dataclass
class RayConfig:
    """The ``ray:`` config: where rollouts run (``enabled: false`` runs them in-process)."""

    enabled: bool = True
    address: str | None = None      # join an existing cluster ("auto" or host:port); None starts a local one
    num_workers: int = 2
    num_cpus_per_worker: float = 1.0
    num_gpus_per_worker: float = 0.0
    threads_per_worker: int = 1     # torch threads inside each worker
    object_store_memory: int = 300 * 2**20
    max_retries: int = 2            # times a chunk is re-run after its worker died

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RayConfig:
        return config_from_dict(cls, d, "ray")


def init_ray(config: RayConfig) -> None:
    """Start (or join) Ray with every piece of its traffic kept on this machine for a local cluster.

    For a local cluster Ray is told to use the loopback address (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read
    when Ray is first imported: without it every Ray process finds its own address by "connecting" a UDP
    socket to 8.8.8.8), and its usage statistics are off."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if config.address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return
    if config.address is None:
        if not LOCAL_ONLY_BOOTSTRAP.exists():
            LOCAL_ONLY_BOOTSTRAP.write_text("# written by critique-gym: a local Ray cluster, no cloud provider\n"
                                            "provider:\n  type: local\n")
            log.info("wrote %s so Ray's usage module does not probe cloud metadata", LOCAL_ONLY_BOOTSTRAP)
        cpus = max(1, int(config.num_workers * config.num_cpus_per_worker) + 1)
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=config.object_store_memory,
                 _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=config.address, log_to_driver=False)


@dataclass
class WorkerSpec:
    """What a worker needs to build its actor and critics; plain data, so Ray can ship it."""

    actor_path: str
    actor: ActorConfig
    sampling: SamplingParams
    critics: dict[str, CriticConfig] = field(default_factory=lambda: {"none": CriticConfig(name="none")})
    env: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    threads: int = 1
    seed: int = 0

    def build_actor(self) -> Actor:
        actor = build_actor(replace(self.actor, batch_size=self.batch_size, threads=self.threads), self.actor_path,
                            self.seed)
        actor.sampling = self.sampling
        return actor


class CriticCache:
    """Critics by name, each built from its settings on first use (a model critic loads its checkpoint once)."""

    def __init__(self, configs: dict[str, CriticConfig], actor: Any, seed: int = 0):
        self.configs, self.actor, self.seed, self.built = configs, actor, seed, {}

    def __getitem__(self, name: str) -> Critic:
        if name not in self.built:
            if name not in self.configs:
                raise KeyError(f"no critic {name!r} configured for rollouts; have {sorted(self.configs)}")
            self.built[name] = build_critic(self.configs[name], actor=self.actor, seed=self.seed)
        return self.built[name]


class _Worker:
    """The body of a rollout worker (a Ray actor when wrapped by ``ray.remote``)."""

    def __init__(self, spec: WorkerSpec):
        import torch

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.actor = spec.build_actor()
        self.critics = CriticCache(spec.critics, self.actor, spec.seed)

    def set_weights(self, state_dict: dict) -> bool:
        trainable(self.actor.backend)[0].load_state_dict(state_dict)
        return True

    def rollout(self, problems: Sequence[Problem], seed: int, sampling: Any = None, env: dict | None = None,
                first: dict | None = None, critic: str = "none") -> list[EpisodeRecord]:
        return run_chunk(self.actor, self.critics[critic], problems, seed, sampling, {**self.spec.env, **(env or {})},
                         first, self.spec.batch_size)

    def pid(self) -> int:
        return os.getpid()


def run_chunk(actor: Actor, critic: Critic, problems: Sequence[Problem], seed: int, sampling: SamplingParams | None,
              env: dict, first: dict | None, batch_size: int) -> list[EpisodeRecord]:
    """One rollout with this call's sampling and env settings; ``first`` replays given first solutions."""
    policy: Any = Actor(actor.backend, actor.template, sampling or actor.sampling, actor.action_unit)
    if first:
        policy = PresampledActor(first, policy)
    return rollout(problems, policy, critic, EnvConfig(**env), batch_size=batch_size, seed=seed)


class LocalRolloutRunner:
    """The in-process twin of :class:`RayRolloutPool` (same calls), for runs without Ray."""

    def __init__(self, actor: Actor, critics: dict[str, CriticConfig], env: dict | None = None, batch_size: int = 64,
                 seed: int = 0):
        self.actor, self.env, self.batch_size = actor, env or {}, batch_size
        self.critics = CriticCache(critics, actor, seed)
        self.last_restarts: list[str] = []

    def critic(self, name: str) -> Critic:
        return self.critics[name]

    def set_weights(self, model: Any) -> None:
        own = trainable(self.actor.backend)[0]
        if own is not model:
            own.load_state_dict(model.state_dict())

    def rollout(self, problems: Sequence[Problem], seed: int = 0, sampling: SamplingParams | None = None,
                env: dict | None = None, first: dict | None = None, critic: str = "none") -> list[EpisodeRecord]:
        return run_chunk(self.actor, self.critics[critic], problems, seed, sampling, {**self.env, **(env or {})}, first,
                         self.batch_size)

    def shutdown(self) -> None:
        pass


class RayRolloutPool:
    """``num_workers`` rollout workers; ``rollout(problems)`` returns records in the order of ``problems``.

    ``critic(name)`` builds the critic in the driver too (with ``local_actor`` for the critics that run on the
    actor's model), for trainers that score completions themselves (GRPO's critic reward)."""

    def __init__(self, config: RayConfig, spec: WorkerSpec, local_actor: Actor | None = None):
        init_ray(config)  # first: it sets the environment Ray reads when it is imported
        import ray

        self.config, self.spec = config, spec
        self._remote = ray.remote(num_cpus=config.num_cpus_per_worker, num_gpus=config.num_gpus_per_worker)(_Worker)
        self.workers = [self._spawn() for _ in range(config.num_workers)]
        self._weights = None  # object ref of the latest weights, for replacements
        self._local = CriticCache(spec.critics, local_actor, spec.seed)
        self.last_restarts: list[str] = []

    def _spawn(self) -> Any:
        return self._remote.remote(self.spec)

    def critic(self, name: str) -> Critic:
        return self._local[name]

    def set_weights(self, model: Any) -> None:
        """Ship ``model``'s weights once through the object store; every worker loads them."""
        import ray

        state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
        self._weights = ray.put(state)
        ray.get([w.set_weights.remote(self._weights) for w in self.workers])

    def rollout(self, problems: Sequence[Problem], seed: int = 0, sampling: SamplingParams | None = None,
                env: dict | None = None, first: dict | None = None, critic: str = "none") -> list[EpisodeRecord]:
        import ray
        from ray.exceptions import RayActorError

        self.last_restarts = []
        n = len(self.workers)
        bounds = [round(i * len(problems) / n) for i in range(n + 1)]
        chunks = [(i, list(problems[bounds[i]:bounds[i + 1]]), seed + bounds[i]) for i in range(n)]
        futures = {w: self.workers[w].rollout.remote(c, s, sampling, env, _subset(first, c), critic) for w, c, s in chunks if c}
        results: dict[int, list[EpisodeRecord]] = {}
        retries = {w: 0 for w in futures}
        while futures:
            for w in list(futures):
                try:
                    results[w] = ray.get(futures.pop(w))
                except RayActorError as err:
                    if retries[w] >= self.config.max_retries:
                        raise RuntimeError(f"rollout worker {w} died {retries[w] + 1} times; giving up") from err
                    retries[w] += 1
                    message = f"worker {w} died mid-rollout ({type(err).__name__}); restarted, its chunk re-run"
                    log.warning(message)
                    self.last_restarts.append(message)
                    self.workers[w] = self._spawn()
                    if self._weights is not None:
                        ray.get(self.workers[w].set_weights.remote(self._weights))
                    _, chunk, chunk_seed = chunks[w]
                    futures[w] = self.workers[w].rollout.remote(chunk, chunk_seed, sampling, env, _subset(first, chunk),
                                                                 critic)
        return [r for w in sorted(results) for r in results[w]]

    def worker_pids(self) -> list[int]:
        import ray

        return ray.get([w.pid.remote() for w in self.workers])

    def shutdown(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        self.workers = []


def _subset(first: dict | None, problems: Sequence[Problem]) -> dict | None:
    return None if first is None else {p.id: first[p.id] for p in problems if p.id in first}
