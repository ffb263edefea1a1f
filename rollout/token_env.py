"""``TokenMathEnv``: the math environment one token at a time, for RL libraries that know only numeric spaces.

Observation: ``{"tokens", "mask"}``, the token ids of the actor's prompt followed by the tokens it generated so far
(left-aligned in a fixed-size ``Box``, padded, ``mask`` 1 where a token is). Action: one token id
(``Discrete(vocab)``). The wrapper assembles the tokens into lines; at each line end (a token whose text holds a
newline, the end-of-sequence token, or ``max_line_tokens`` tokens) it steps the text environment with the line, so
the critic's feedback, the cut back to the flagged step and the verifier's reward are the text environment's; the
next observation is the prompt the actor would now be given (feedback and kept steps included), the same
``Actor`` builds. Rewards are the text environment's, paid on the token that ends a line.

An episode also ends (``truncated``) when the prompt and its tokens no longer fit the observation.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.actor import ActorConfig, build_actor, episode_header
from agents.prompts import ChatTemplate, PromptTemplate
from critics.registry import CriticConfig, build_critic
from envs.math_env import EnvConfig, MathReasoningEnv
from envs.registry import ProblemsConfig, build_source

__all__ = ["TOKEN_ENV_ID", "TokenMathEnv", "make_token_env"]

TOKEN_ENV_ID = "critique_gym/MathReasoningTokens-v0"


class TokenMathEnv(gym.Wrapper):
    """A step-level :class:`MathReasoningEnv` seen token by token (``tokenizer``: the actor's)."""

    def __init__(self, env: MathReasoningEnv, tokenizer: Any, template: PromptTemplate | ChatTemplate | None = None,
                 max_length: int = 512, max_line_tokens: int = 48):
        if env.config.action_unit != "step":
            raise ValueError("TokenMathEnv needs the text environment's action_unit='step' (it sends one line at a time)")
        super().__init__(env)
        self.tokenizer = tokenizer
        self.template = template or PromptTemplate()
        self.max_length, self.max_line_tokens = max_length, max_line_tokens
        self.vocab_size = len(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.eos_id = tokenizer.eos_token_id
        self.observation_space = spaces.Dict({
            "tokens": spaces.Box(0, self.vocab_size - 1, shape=(max_length,), dtype=np.int64),
            "mask": spaces.Box(0, 1, shape=(max_length,), dtype=np.int8),
        })
        self.action_space = spaces.Discrete(self.vocab_size)
        self._prompt: list[int] = []
        self._line: list[int] = []
        self._tokens = 0
        self.finished: list[tuple[Any, int]] = []  # (record, tokens generated) of each episode that ended

    # -- gymnasium API ---------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        self.action_space.seed(seed)
        self._prompt, self._line, self._tokens = self._prompt_ids(""), [], 0
        return self._observation(), self._info(info, line_done=False)

    def step(self, action: Any):
        token = int(action)
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"action {action!r} is not a token id of this vocabulary (0..{self.vocab_size - 1})")
        self._line.append(token)
        self._tokens += 1
        piece = self.tokenizer.decode([token], skip_special_tokens=False)
        if not (token == self.eos_id or "\n" in piece or len(self._line) >= self.max_line_tokens):
            truncated = len(self._prompt) + len(self._line) >= self.max_length
            if truncated:
                self._end()
            return self._observation(), 0.0, False, truncated, self._info(self._last_info, line_done=False)
        line = self.template.decode(self.tokenizer.decode(self._line, skip_special_tokens=True)).strip()
        observation, reward, terminated, truncated, info = self.env.step(line)
        self._line = []
        if not (terminated or truncated):
            self._prompt = self._prompt_ids(observation["feedback"])
            truncated = len(self._prompt) >= self.max_length
        if terminated or truncated:
            self._end()
        return self._observation(), float(reward), terminated, truncated, self._info(info, line_done=True, line=line)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _end(self) -> None:
        self.env.unwrapped.record.done = True
        self.finished.append((self.env.unwrapped.record, self._tokens))

    def _prompt_ids(self, feedback: str) -> list[int]:
        """The prompt the actor is given now: the header (with the feedback on the last attempt) and kept steps."""
        record = self.env.unwrapped.record
        text = episode_header(self.template, record, feedback) + self.template.solution_lines(record.steps)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _observation(self) -> dict[str, np.ndarray]:
        ids = (self._prompt + self._line)[: self.max_length]
        tokens = np.full(self.max_length, self.pad_id, dtype=np.int64)
        mask = np.zeros(self.max_length, dtype=np.int8)
        tokens[: len(ids)], mask[: len(ids)] = ids, 1
        return {"tokens": tokens, "mask": mask}

    def _info(self, info: dict[str, Any], **extra: Any) -> dict[str, Any]:
        self._last_info = info
        return {**info, **extra}


def make_token_env(checkpoint: str, critic: str = "oracle", problems: dict[str, Any] | None = None,
                   max_length: int = 512, max_line_tokens: int = 48, number_format: str = "reversed",
                   **env_config: Any) -> TokenMathEnv:
    """The registered env's factory (``gymnasium.make(TOKEN_ENV_ID, checkpoint=...)``, RLlib's env creator): the
    checkpoint's tokenizer and prompt template, a critic by registry name, problems by ``problems:`` config."""
    actor = build_actor(ActorConfig(number_format=number_format, batch_size=1, threads=1), checkpoint)
    source = build_source(ProblemsConfig(**(problems or {})))
    env = MathReasoningEnv(source, build_critic(CriticConfig(name=critic)), EnvConfig(**{**env_config, "action_unit": "step"}))
    return TokenMathEnv(env, actor.backend.tokenizer, actor.template, max_length, max_line_tokens)
