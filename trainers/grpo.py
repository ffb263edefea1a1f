"""GRPO as an RL baseline, through TRL's ``GRPOTrainer`` with the project's verifier as the reward.

It shares the self-improvement loop's problems, budget, measurements, checkpoints and resume
(:class:`~trainers.self_improve.SelfImprover`); only the iteration differs: ``samples_per_problem`` completions
per problem (the GRPO group) are sampled by TRL, scored by the verifier (optionally plus the critic's step-level
verdicts as a dense reward), and the policy takes group-relative policy-gradient steps. The budget is the same
``problems x samples_per_problem`` generations per iteration as the other algorithms.

``trl`` and ``datasets`` are imported when an iteration runs: heavy optional dependencies of this one algorithm.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import torch

from agents.backends import trainable
from core.problem import Problem
from core.protocols import IterationSummary
from rewards.answer import split_solution
from rewards.verifier import verify_response
from trainers.self_improve import SelfImprover

__all__ = ["GRPOBaseline", "verifier_reward"]


def verifier_reward(template: Any, critic: Any = None, weight: float = 0.0, seen: dict | None = None,
                    problems: dict | None = None):
    """A TRL reward function: 1 for a verified answer, plus ``weight`` x the share of steps the critic accepts.

    ``seen`` (question -> set of correct solutions) collects what GRPO explored, for the shared measurements;
    ``problems`` (question -> Problem) gives the critic the whole problem (a reference-aware critic needs it).
    """

    def reward(prompts: list[str], completions: list[str], answer: list[str], question: list[str], **_: Any) -> list[float]:
        out = []
        texts = [template.decode(c) for c in completions]
        for text, gold, q in zip(texts, answer, question):
            ok = verify_response(text, gold).correct
            out.append(float(ok))
            if seen is not None:
                seen.setdefault(q, set())
                if ok:
                    seen[q].add(text.strip())
        if critic is not None and weight > 0:
            steps = [list(split_solution(t)) for t in texts]
            known = problems or {}
            reviewed = [known.get(q) or Problem(id=f"grpo-{i}", question=q, answer=a)
                        for i, (q, a) in enumerate(zip(question, answer))]
            for i, critique in enumerate(critic.critique_batch(reviewed, steps)):
                judged = [j for j in critique.steps if not j.is_answer]
                if judged:
                    out[i] += weight * sum(j.correct for j in judged) / len(judged)
        return out

    reward.__name__ = "verifier" if weight == 0 else "verifier_plus_critic"
    return reward


class GRPOBaseline(SelfImprover):
    """``grpo`` (verifier reward) and ``grpo_critic`` (plus the critic's dense step reward)."""

    def iteration(self, i: int) -> IterationSummary:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        c, g, started = self.config, self.config.grpo, time.perf_counter()
        problems = self._problems(i)
        template = self.actor.template
        data = Dataset.from_list([{"prompt": template.prompt(p.question), "answer": p.answer, "question": p.question}
                                  for p in problems])
        group = c.samples_per_problem
        batch = max(group, (c.batch_size // group) * group)
        steps = max(1, c.budget // batch)
        weight = g.critic_reward_weight if self.name == "grpo_critic" else 0.0
        critic = self.runner.critic(c.critic) if weight > 0 else None
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
            disable_tqdm=True,
        )
        model, tokenizer = trainable(self.actor.backend)
        model.train()
        seen: dict[str, set[str]] = {}
        trainer = GRPOTrainer(model=model, reward_funcs=verifier_reward(template, critic, weight, seen,
                                                                   {p.question: p for p in problems}),
                              args=args, train_dataset=data, processing_class=tokenizer)
        trainer.train()
        model.eval()
        self.runner.set_weights(model)
        rewards = [h.get("reward") for h in trainer.state.log_history if "reward" in h]
        shutil.rmtree(self.out_dir / f"iter_{i}" / "trainer", ignore_errors=True)
        summary = self._measure(i, {"problems": len(problems), "generations": steps * batch, "budget": c.budget,
                                    "exploration": round(sum(bool(v) for v in seen.values()) / len(problems), 4),
                                    "diversity": round(sum(len(v) for v in seen.values()) / len(problems), 4),
                                    "extra": {"grpo_steps": steps, "mean_reward": rewards[-1] if rewards else None}},
                                started)
        self._save(i, summary)
        return summary
