"""The environment inside TRL's trainers: ``GRPOTrainer(rollout_func=...)`` whose completions are episodes.

TRL's GRPO (and its other online trainers with a ``rollout_func``) normally samples completions itself. Given
:class:`EnvRollout` it hands each generation batch's prompts over instead: every prompt becomes one
:class:`~envs.math_env.MathReasoningEnv` episode, played with the model being trained, the critic in the loop and
the verifier, and TRL trains on the episodes' exact token ids with :func:`episode_reward`. The project's own GRPO
baseline (trainers/grpo.py) is built on it; :func:`env_rollout_func` is the same for a trainer users set up
themselves::

    problems = SyntheticArithmetic(size=256)[:]          # or any problem source's problems
    template = PromptTemplate(number_format="reversed")  # the prompts the actor was trained on
    rollout_func = env_rollout_func(problems, tokenizer, template, critic=OracleCritic())
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, train_dataset=grpo_dataset(problems, template),
                          reward_funcs=episode_reward(weight=0.5), rollout_func=rollout_func, args=GRPOConfig(...))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from agents.actor import Actor
from agents.backends.hf import HFBackend
from core.episode import EpisodeRecord
from core.problem import Problem
from core.protocols import Critic
from core.sampling import SamplingParams
from critics.base import NullCritic
from envs.math_env import EnvConfig
from rollout.ray_pool import run_chunk

__all__ = ["EnvRollout", "TrainerModelRunner", "accepted_share", "env_rollout_func", "episode_reward", "grpo_dataset"]


def accepted_share(record: EpisodeRecord) -> float:
    """The share of the solution's steps (the answer line aside) the critic accepted; 0 without a critique."""
    if not record.attempts:
        return 0.0
    judged = [j for j in record.attempts[0].critique.steps if not j.is_answer]
    return sum(j.correct for j in judged) / len(judged) if judged else 0.0


def episode_reward(weight: float = 0.0):
    """A TRL reward function over the fields :class:`EnvRollout` forwards: the environment's verified
    answer (1 or 0), plus ``weight`` x the critic's accepted share of steps."""

    def reward(prompts: list[Any], completions: list[Any], correct: list[bool], step_share: list[float],
               **_: Any) -> list[float]:
        return [float(ok) + weight * share for ok, share in zip(correct, step_share)]

    reward.__name__ = "verifier" if weight == 0 else "verifier_plus_critic"
    return reward


def grpo_dataset(problems: Sequence[Problem], template: Any) -> list[dict[str, str]]:
    """TRL dataset rows (``{"prompt": ...}``) for ``problems``: the actor's own solve prompts, which is how
    :class:`EnvRollout` finds each prompt's problem again (``datasets.Dataset.from_list`` makes the dataset)."""
    return [{"prompt": template.prompt(p.question)} for p in problems]


class TrainerModelRunner:
    """A rollout runner over the model TRL is training, in this process and without a copy of its weights: the
    runner interface (``set_weights``, ``rollout``) :class:`EnvRollout` calls, for one critic."""

    def __init__(self, tokenizer: Any, template: Any, critic: Critic | None = None, env: EnvConfig | None = None,
                 batch_size: int = 64):
        self.tokenizer, self.template, self.batch_size = tokenizer, template, batch_size
        self.critics = {"none": NullCritic(), "critic": critic or NullCritic()}
        self.env = asdict(env or EnvConfig(max_refinements=0))
        self.model: Any = None
        self.last_restarts: list[str] = []

    def set_weights(self, model: Any) -> None:
        self.model = model  # the trainer's own module: its current weights are what the rollout samples with

    def rollout(self, problems: Sequence[Problem], seed: int = 0, sampling: SamplingParams | None = None,
                env: dict | None = None, first: dict | None = None, critic: str = "none") -> list[EpisodeRecord]:
        if self.model is None:
            raise RuntimeError("TrainerModelRunner: no model yet (EnvRollout sets the trainer's before a rollout)")
        actor = Actor(HFBackend(self.model, self.tokenizer, batch_size=self.batch_size), self.template,
                      sampling or SamplingParams())
        return run_chunk(actor, self.critics[critic], problems, seed, sampling, {**self.env, **(env or {})}, first,
                         self.batch_size)


def env_rollout_func(problems: Sequence[Problem], tokenizer: Any, template: Any, critic: Critic | None = None,
                     env: EnvConfig | None = None, sampling: SamplingParams | None = None, seed: int = 0,
                     batch_size: int = 64) -> EnvRollout:
    """A ``rollout_func`` for a user's own TRL ``GRPOTrainer``: episodes of ``problems`` (their prompts as
    :func:`grpo_dataset` writes them) with ``critic`` reviewing each solution (for :func:`episode_reward`'s
    critic share; the env's ``max_refinements`` stays 0, since GRPO trains on one generation per episode)."""
    runner = TrainerModelRunner(tokenizer, template, critic, env, batch_size)
    sampling = sampling or SamplingParams(max_new_tokens=256, temperature=1.0)
    prompts = [row["prompt"] for row in grpo_dataset(problems, template)]
    return EnvRollout(runner, dict(zip(prompts, problems)), sampling, "critic" if critic is not None else "none", seed,
                      iteration=0)


class EnvRollout:
    """TRL's ``rollout_func``: one environment episode per prompt (TRL's batch already holds each prompt once per
    group member), played by ``runner`` with the weights being trained; keeps every episode in ``episodes``.

    ``by_prompt`` maps each dataset prompt (the text, or a conversation's last message) to its problem; the
    episodes' exact prompt and completion ids go back to TRL with ``correct`` and ``step_share`` for the reward.
    """

    def __init__(self, runner: Any, by_prompt: dict[str, Problem], sampling: Any, critic: str, seed: int,
                 iteration: int):
        self.runner, self.by_prompt, self.sampling, self.critic = runner, by_prompt, sampling, critic
        self.seed, self.iteration = seed, iteration
        self.episodes: list[EpisodeRecord] = []
        self.restarts: list[str] = []

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        model = trainer.model
        was_training = model.training
        model.eval()
        self.runner.set_weights(model)
        call = len(self.episodes)
        replicas = [replace(p, id=f"{p.id}#g{self.iteration}.{call + j}", metadata={**p.metadata, "replica_of": p.id})
                    for j, p in enumerate(self._problem(prompt) for prompt in prompts)]
        records = self.runner.rollout(replicas, seed=self.seed * 1000 + self.iteration * 97 + call,
                                      sampling=self.sampling, env={"max_refinements": 0}, critic=self.critic)
        self.restarts += self.runner.last_restarts
        by_id = {r.problem.id: r for r in records}
        records = [by_id[p.id] for p in replicas]
        self.episodes += records
        if was_training:
            model.train()
        odd = {r.problem.id: len(r.generations) for r in records if len(r.generations) != 1}
        if odd:
            raise RuntimeError("GRPO needs one model generation per episode (a whole-solution actor with token ids); "
                               f"generations per episode: {dict(list(odd.items())[:3])}")
        gens = [r.generations[0] for r in records]
        return {"prompt_ids": [list(gen.prompt_ids) for gen in gens],
                "completion_ids": [list(gen.completion_ids) for gen in gens],
                "logprobs": None,
                "correct": [r.correct for r in records],
                "step_share": [accepted_share(r) for r in records]}

    def _problem(self, prompt: Any) -> Problem:
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        try:
            return self.by_prompt[text]
        except KeyError:
            raise RuntimeError("GRPO's rollout got a prompt that is not one of this iteration's problems") from None
