"""GRPO as an RL baseline: TRL's ``GRPOTrainer`` optimises, the project's environment rolls out.

Every completion GRPO learns from is an episode of :class:`~envs.math_env.MathReasoningEnv`, played by the same
rollout runner (in-process or Ray workers) as the other algorithms: TRL's ``rollout_func`` hook hands each
generation batch's prompts to ``trainers.trl_env.EnvRollout``, which plays one episode per prompt and returns the
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

import torch

from agents.backends import trainable
from core.progress import show_progress
from core.protocols import IterationSummary
from trainers.self_improve import SelfImprover
from trainers.trl_env import EnvRollout, episode_reward, grpo_dataset

__all__ = ["GRPOBaseline"]


class GRPOBaseline(SelfImprover):
    """``grpo`` (verifier reward) and ``grpo_critic`` (plus the critic's dense step reward)."""

    def iteration(self, i: int) -> IterationSummary:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        c, g, started = self.config, self.config.grpo, time.perf_counter()
        problems = self._problems(i)
        rows = grpo_dataset(problems, self.actor.template)
        prompts = [row["prompt"] for row in rows]
        data = Dataset.from_list(rows)
        group = c.samples_per_problem
        # a batch never holds more prompts than the iteration's budget (else TRL's loader yields no batch at all)
        batch = max(group, (min(c.batch_size, c.budget) // group) * group)
        steps = max(1, c.budget // batch)
        weight = g.critic_reward_weight if self.name == "grpo_critic" else 0.0
        sampling = replace(self.actor.sampling, temperature=c.temperature, max_new_tokens=g.max_completion_length)
        play = EnvRollout(self.runner, dict(zip(prompts, problems)), sampling, c.critic if weight > 0 else "none", self.seed, i)
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
        if not episodes:
            raise RuntimeError(f"GRPO played no episodes in iteration {i} (batch {batch}, {len(problems)} problems x "
                               f"{group} generations): its data loader gave no batch")
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
