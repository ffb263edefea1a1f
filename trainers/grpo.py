"""GRPO as an RL baseline: TRL's ``GRPOTrainer`` optimises, the project's environment rolls out.

Every completion GRPO learns from is an episode of :class:`~envs.math_env.MathReasoningEnv`, played by the same
rollout runner (in-process or Ray workers) as the other algorithms: TRL's ``rollout_func`` hook hands each
generation batch's prompts to ``_EnvRollout``, which plays one episode per prompt and returns the
episodes' exact token ids. The reward is the environment's verdict (1 for a verified answer) plus, for
``grpo_critic``, ``critic_reward_weight`` x the share of steps the critic in the loop accepted -- the same
critic, on the same episodes, that the critique-in-the-loop algorithm uses. It shares the self-improvement
loop's problems, budget (``problems x samples_per_problem`` episodes per iteration), measurements,
checkpoints and resume (:class:`~trainers.self_improve.SelfImprover`); only the iteration differs.

``trl`` and ``datasets`` are imported when an iteration runs: heavy optional dependencies of this one algorithm.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from typing import Any

import torch

from agents.backends import trainable
from core.episode import EpisodeRecord
from core.problem import Problem
from core.progress import show_progress
from core.protocols import IterationSummary
from trainers.self_improve import SelfImprover

__all__ = ["GRPOBaseline", "accepted_share", "episode_reward"]


def accepted_share(record: EpisodeRecord) -> float:
    """The share of the solution's steps (the answer line aside) the critic accepted; 0 without a critique."""
    if not record.attempts:
        return 0.0
    judged = [j for j in record.attempts[0].critique.steps if not j.is_answer]
    return sum(j.correct for j in judged) / len(judged) if judged else 0.0


def episode_reward(weight: float = 0.0):
    """A TRL reward function over the fields ``_EnvRollout`` forwards: the environment's verified
    answer (1 or 0), plus ``weight`` x the critic's accepted share of steps."""

    def reward(prompts: list[Any], completions: list[Any], correct: list[bool], step_share: list[float],
               **_: Any) -> list[float]:
        return [float(ok) + weight * share for ok, share in zip(correct, step_share)]

    reward.__name__ = "verifier" if weight == 0 else "verifier_plus_critic"
    return reward


class GRPOBaseline(SelfImprover):
    """``grpo`` (verifier reward) and ``grpo_critic`` (plus the critic's dense step reward)."""

    def iteration(self, i: int) -> IterationSummary:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        c, g, started = self.config, self.config.grpo, time.perf_counter()
        problems = self._problems(i)
        prompts = [self.actor.template.prompt(p.question) for p in problems]
        data = Dataset.from_list([{"prompt": prompt} for prompt in prompts])
        group = c.samples_per_problem
        batch = max(group, (c.batch_size // group) * group)
        steps = max(1, c.budget // batch)
        weight = g.critic_reward_weight if self.name == "grpo_critic" else 0.0
        sampling = replace(self.actor.sampling, temperature=c.temperature, max_new_tokens=g.max_completion_length)
        play = _EnvRollout(self.runner, dict(zip(prompts, problems)), sampling, c.critic if weight > 0 else "none", self.seed, i)
        args = GRPOConfig(
            output_dir=str(self.out_dir / f"iter_{i}" / "trainer"),
            max_steps=steps,
            per_device_train_batch_size=batch,
            num_generations=group,
            max_completion_length=g.max_completion_length,
            temperature=c.temperature,
            learning_rate=g.learning_rate,
            beta=g.beta,
            seed=self.seed * 1000 + i,
            data_seed=self.seed * 1000 + i,
            logging_steps=max(1, steps),
            save_strategy="no",
            report_to="none",
            use_cpu=not torch.cuda.is_available(),
            bf16=False,
            disable_tqdm=not show_progress(),
        )
        model, tokenizer = trainable(self.actor.backend)
        model.train()
        trainer = GRPOTrainer(model=model, reward_funcs=episode_reward(weight), args=args, train_dataset=data,
                              processing_class=tokenizer, rollout_func=play)
        trainer.train()
        model.eval()
        self.runner.set_weights(model)
        rewards = [h.get("reward") for h in trainer.state.log_history if "reward" in h]
        shutil.rmtree(self.out_dir / f"iter_{i}" / "trainer", ignore_errors=True)
        episodes = play.episodes
        seen: dict[str, set[tuple[str, ...]]] = {}
        for r in episodes:
            seen.setdefault(r.problem.metadata["replica_of"], set())
            if r.correct:
                seen[r.problem.metadata["replica_of"]].add(tuple(r.steps))
        self.rates.update(episodes)  # the curriculum's frontier, as for the other algorithms
        summary = self._measure(i, {
            "problems": len(problems), "generations": len(episodes), "budget": c.budget,
            "exploration": round(sum(bool(v) for v in seen.values()) / len(problems), 4),
            "diversity": round(sum(len(v) for v in seen.values()) / len(problems), 4),
            "tokens": sum(len(gen.completion_ids) for r in episodes for gen in r.generations),
            "restarts": play.restarts,
            "extra": {"grpo_steps": steps, "mean_reward": rewards[-1] if rewards else None,
                      "reviewed": sum(bool(r.attempts) for r in episodes),
                      "levels": sorted({p.difficulty for p in problems})},
        }, started)
        self._save(i, summary)
        return summary


class _EnvRollout:
    """TRL's rollout hook for one iteration: one environment episode per prompt (the batch already holds each
    prompt once per group member), played by the runner with the weights being trained; keeps every episode."""

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
