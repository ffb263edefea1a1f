"""GRPO as an RL baseline, through TRL's ``GRPOTrainer`` with the project's verifier as the reward.

It shares the self-improvement loop's problems, budget, measurements, checkpoints and resume
(:class:`~trainers.self_improve.SelfImprover`); only the iteration differs: ``samples_per_problem`` completions
per problem (the GRPO group) are sampled by TRL, scored by the verifier (optionally plus the critic's step-level
verdicts as a dense reward), and the policy takes group-relative policy-gradient steps. The budget is the same
``problems x samples_per_problem`` generations per iteration as the other algorithms.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Any

from trainers.self_improve import SelfImproveConfig, SelfImprover

__all__ = ["GRPOBaselineConfig", "GRPOBaseline", "verifier_reward"]


@dataclass
class GRPOBaselineConfig(SelfImproveConfig):
    algorithm: str = "rft"             # unused by GRPO; kept so the shared fields validate
    beta: float = 0.0                  # KL coefficient (0: no reference model, as in DAPO / Dr. GRPO)
    critic_reward_weight: float = 0.0  # > 0: add the critic's share of steps judged correct as a dense reward
    grpo_learning_rate: float = 1e-4
    max_completion_length: int = 160


def verifier_reward(template: Any, critic: Any = None, weight: float = 0.0, seen: dict | None = None,
                    problems: dict | None = None):
    """A TRL reward function: 1 for a verified answer, plus ``weight`` x the share of steps the critic accepts.

    ``seen`` (question -> set of correct solutions) collects what GRPO explored, for the shared measurements;
    ``problems`` (question -> Problem) gives the critic the whole problem (a reference-aware critic needs it).
    """
    from envs.problems import Problem
    from rewards.verifier import verify_response

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
            steps = [[line.strip() for line in t.splitlines() if line.strip()] for t in texts]
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
    def iteration(self, i: int) -> dict[str, Any]:
        import torch
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        c, started = self.config, time.perf_counter()
        problems = self._problems(i)
        template = self.actor.template
        data = Dataset.from_list([{"prompt": template.prompt(p.question), "answer": p.answer, "question": p.question}
                                  for p in problems])
        group = c.samples_per_problem
        batch = max(group, (c.batch_size // group) * group)
        steps = max(1, c.budget // batch)
        critic = self.runner.critics[c.critic] if c.critic_reward_weight > 0 else None
        args = GRPOConfig(
            output_dir=str(self.out_dir / f"iter_{i}" / "trainer"),
            max_steps=steps,
            per_device_train_batch_size=batch,
            num_generations=group,
            max_completion_length=c.max_completion_length,
            temperature=c.temperature,
            learning_rate=c.grpo_learning_rate,
            beta=c.beta,
            seed=c.seed * 1000 + i,
            data_seed=c.seed * 1000 + i,
            logging_steps=max(1, steps),
            save_strategy="no",
            report_to="none",
            use_cpu=not torch.cuda.is_available(),
            bf16=False,
            disable_tqdm=True,
        )
        model, tokenizer = self.actor.backend.model, self.actor.backend.tokenizer
        model.train()
        seen: dict[str, set[str]] = {}
        trainer = GRPOTrainer(model=model, reward_funcs=verifier_reward(template, critic, c.critic_reward_weight, seen,
                                                                   {p.question: p for p in problems}),
                              args=args, train_dataset=data, processing_class=tokenizer)
        trainer.train()
        model.eval()
        self.runner.set_weights(model)
        rewards = [h.get("reward") for h in trainer.state.log_history if "reward" in h]
        shutil.rmtree(self.out_dir / f"iter_{i}" / "trainer", ignore_errors=True)
        summary = self._measure(i, {"problems": len(problems), "generations": steps * batch, "budget": c.budget,
                                    "grpo_steps": steps, "mean_reward": rewards[-1] if rewards else None,
                                    "exploration": round(sum(bool(v) for v in seen.values()) / len(problems), 4),
                                    "diversity": round(sum(len(v) for v in seen.values()) / len(problems), 4),
                                    "restarts": []}, started)
        self._save(i, summary)
        return summary
