"""The algorithm registry: every self-improvement algorithm ``self_improve.algorithms`` can name.

Each entry builds an :class:`core.Algorithm` from the shared config, a rollout runner and the actor; a new
algorithm is one class (usually a :class:`~trainers.self_improve.SelfImprover` with its own ``iteration``) plus
one entry here, and the self-improvement stage, its tables and its resume pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.registry import Registry
from trainers.grpo import GRPOBaseline
from trainers.rllib_ppo import RLlibPPO
from trainers.self_improve import SelfImprover

__all__ = ["ALGORITHMS", "AlgorithmEntry"]


@dataclass(frozen=True)
class AlgorithmEntry:
    cls: type[SelfImprover]
    about: str
    uses_critic: bool  # needs ``self_improve.critic`` in the rollout runner


ALGORITHMS: Registry[AlgorithmEntry] = Registry("self_improve algorithm")
ALGORITHMS.register("critique", AlgorithmEntry(SelfImprover, "critique-in-the-loop (the paper's)", True))
ALGORITHMS.register("rft", AlgorithmEntry(SelfImprover, "vanilla rejection-sampling fine-tuning", False))
ALGORITHMS.register("grpo", AlgorithmEntry(GRPOBaseline, "GRPO (TRL) with the verifier as reward", False))
ALGORITHMS.register("rllib_ppo", AlgorithmEntry(RLlibPPO, "PPO (RLlib) on the token-level environment, verifier reward",
                                                False))
ALGORITHMS.register("grpo_critic", AlgorithmEntry(GRPOBaseline, "GRPO plus the critic's step share as dense reward",
                                                  True))
