"""The batched rollout loop: many environments stepped together, one ``generate`` per turn for all of them; and the
environment seen one token at a time (``TokenMathEnv``, registered as ``critique_gym/MathReasoningTokens-v0``)."""

import gymnasium

from rollout.loop import RolloutStats, rollout
from rollout.token_env import TOKEN_ENV_ID, TokenMathEnv, make_token_env

if TOKEN_ENV_ID not in gymnasium.registry:
    gymnasium.register(id=TOKEN_ENV_ID, entry_point="rollout.token_env:make_token_env")

__all__ = ["TOKEN_ENV_ID", "RolloutStats", "TokenMathEnv", "make_token_env", "rollout"]
