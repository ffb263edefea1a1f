"""The batched rollout loop: many environments stepped together, one ``generate`` per turn for all of them."""

from rollout.loop import RolloutStats, rollout

__all__ = ["RolloutStats", "rollout"]
