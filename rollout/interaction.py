"""The environment as a veRL multi-turn *interaction*: the critic's feedback is the user turn, the verifier the score.

veRL's multi-turn rollout (SGLang/vLLM agent loop) calls an interaction object between assistant turns: it starts
one per trajectory with the dataset row's ``interaction_kwargs``, hands it the conversation after every assistant
message, and takes back ``(should_terminate, response, turn_score, extra)``. :class:`CritiqueInteraction` plays one
:class:`~envs.math_env.MathReasoningEnv` episode per trajectory behind that interface: the assistant's message is
the env's action (a whole solution, then the revision from the flagged step), the critic's feedback on it is the
response, and the turn score is the env's reward (the verifier's, plus any shaping the env config sets). The
trajectory ends when the env's episode does.

veRL's interaction config (``interaction_config_path`` of its multi-turn rollout)::

    interaction:
      - name: critique_gym
        class_name: rollout.interaction.CritiqueInteraction
        config:
          critic: oracle                   # a name in critics.registry (model: a critique checkpoint)
          critic_config: {}                # critics.registry.CriticConfig keys, e.g. {model: /path/to/critic}
          env: {max_refinements: 2}        # envs.math_env.EnvConfig keys

and each dataset row's ``extra_info.interaction_kwargs``: ``{name: critique_gym, question: ..., ground_truth:
..., steps: [...]}`` (``steps``, a reference solution, only for critics that read one, like the oracle).

With veRL installed the class subclasses ``verl.interactions.base.BaseInteraction``; without it, a stand-in with
the same constructor, so the adapter can be built and tested anywhere (veRL needs CUDA).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any
from uuid import uuid4

from core.problem import ListProblemSource, Problem
from critics.registry import CriticConfig, build_critic
from envs.math_env import EnvConfig, MathReasoningEnv

try:  # pragma: no cover - veRL is a GPU install
    from verl.interactions.base import BaseInteraction
except ImportError:
    class BaseInteraction:  # the constructor veRL's base class has
        def __init__(self, config: dict[str, Any]):
            self.config = config
            self.name: str = config.get("name", "interaction_agent")

__all__ = ["CritiqueInteraction"]


class CritiqueInteraction(BaseInteraction):
    """One critique-gym episode per trajectory, keyed by veRL's ``instance_id``."""

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        known = {f.name for f in fields(CriticConfig)}
        extra = set(config.get("critic_config", {})) - known
        if extra:
            raise ValueError(f"critic_config: unknown keys {sorted(extra)}; valid: {sorted(known)}")
        self.critic = build_critic(CriticConfig(**{**config.get("critic_config", {}),
                                                   "name": config.get("critic", "oracle")}))
        self.env_config = EnvConfig(**config.get("env", {}))
        self._episodes: dict[str, MathReasoningEnv] = {}

    async def start_interaction(self, instance_id: str | None = None, question: str | None = None,
                                ground_truth: Any = None, steps: list[str] | None = None, **kwargs: Any) -> str:
        if not question or ground_truth is None:
            raise ValueError("CritiqueInteraction: interaction_kwargs need 'question' and 'ground_truth'")
        instance_id = instance_id or str(uuid4())
        problem = Problem(id=instance_id, question=question, answer=str(ground_truth),
                          steps=tuple(steps) if steps else None, source=str(kwargs.get("data_source", "verl")))
        env = MathReasoningEnv(ListProblemSource([problem], name="verl"), self.critic, self.env_config)
        env.reset(options={"problem": problem})
        self._episodes[instance_id] = env
        return instance_id

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]],
                                **kwargs: Any) -> tuple[bool, str, float, dict[str, Any]]:
        env = self._env(instance_id)
        action = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "assistant"), "")
        observation, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        record = env.record
        if done:
            response = "Your answer is correct." if record.correct else "Your answer is not correct."
        else:  # the critic flagged a step: the kept steps stand, the revision starts at the flagged one
            kept = len(record.steps)
            response = (f"{observation['feedback']}\nSteps 1-{kept} stand. Continue the solution from step "
                        f"{kept + 1}." if kept else f"{observation['feedback']}\nWrite the solution again.")
        return done, response, float(reward), {"correct": record.correct, "refinements": record.refinement_rounds,
                                               "action_errors": list(record.action_errors)}

    async def calculate_score(self, instance_id: str | None = None, **kwargs: Any) -> float:
        """The episode's return so far (the verifier's reward once it has ended)."""
        return float(self._env(instance_id).record.total_reward) if instance_id else 0.0

    async def finalize_interaction(self, instance_id: str | None = None, **kwargs: Any) -> None:
        self._episodes.pop(instance_id, None)

    def record(self, instance_id: str):
        """The episode record (steps, critiques, verification) of a live trajectory, for logging."""
        return self._env(instance_id).record

    def _env(self, instance_id: str) -> MathReasoningEnv:
        try:
            return self._episodes[instance_id]
        except KeyError:
            raise KeyError(f"CritiqueInteraction: no interaction {instance_id!r} (start_interaction first)") from None
