"""PPO through RLlib as an RL baseline: the token-level environment, the tiny actor as the policy.

RLlib's PPO (new API stack) steps :class:`~rollout.token_env.TokenMathEnv` -- one action per token, the text
environment's critic and verifier behind it -- with :class:`ActorRLModule`: the policy is the actor's own
causal LM (its next-token logits at the last position of the observation), the value head a linear layer on its
last hidden state. It shares the self-improvement loop's problems (the curriculum included), budget
(``problems x samples_per_problem`` episodes per iteration, as token timesteps), measurement, checkpoints and
resume (:class:`~trainers.self_improve.SelfImprover`); after each iteration the policy's weights become the
actor's. Env runners and the learner live in this process (RLlib's local mode on the project's on-machine Ray).

``ray[rllib]`` is imported when an iteration runs: an optional dependency of this one algorithm
(``pip install -e ".[rllib]"``).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from agents.backends import trainable
from core.episode import EpisodeRecord
from core.problem import ListProblemSource
from core.protocols import IterationSummary
from critics.registry import CriticConfig, build_critic
from envs.math_env import EnvConfig, MathReasoningEnv
from rollout.ray_pool import RayConfig, init_ray
from rollout.token_env import TokenMathEnv
from storage import atomic_directory
from trainers.self_improve import SelfImprover

__all__ = ["ActorRLModule", "RLlibPPO"]


def _rl_module_class() -> type:
    """The RLModule class, defined once RLlib is importable (it subclasses RLlib's own)."""
    global ActorRLModule
    if isinstance(ActorRLModule, type):
        return ActorRLModule
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.rl_module.apis import ValueFunctionAPI
    from ray.rllib.core.rl_module.torch import TorchRLModule
    from transformers import AutoModelForCausalLM

    class _ActorRLModule(TorchRLModule, ValueFunctionAPI):
        """The actor's causal LM as a PPO policy over tokens, with a value head on its last hidden state."""

        def setup(self) -> None:
            self.lm = AutoModelForCausalLM.from_pretrained(self.model_config["checkpoint"], dtype=torch.float32)
            self.value_head = torch.nn.Linear(self.lm.config.hidden_size, 1)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)

        def _last(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
            obs = batch[Columns.OBS]
            ids, mask = obs["tokens"].long(), obs["mask"].long()
            # tokens are left-aligned: columns past the longest row are padding no real token attends to
            width = max(1, int(mask.sum(-1).max()))
            ids, mask = ids[:, :width], mask[:, :width]
            out = self.lm(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            last = (mask.sum(-1) - 1).clamp(min=0)
            rows = torch.arange(ids.shape[0], device=ids.device)
            return out.hidden_states[-1][rows, last], out.logits[rows, last]

        def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            _, logits = self._last(batch)
            return {Columns.ACTION_DIST_INPUTS: logits}

        def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            hidden, logits = self._last(batch)
            return {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: hidden}

        def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
            if embeddings is None:
                embeddings, _ = self._last(batch)
            return self.value_head(embeddings).squeeze(-1)

    ActorRLModule = _ActorRLModule
    return ActorRLModule


ActorRLModule: Any = None  # built by _rl_module_class() once ray[rllib] is importable


# what the env creator needs, by key: RLlib pickles the creator, so it finds the tokenizer here (env runner and
# driver are one process) and leaves its envs where the trainer reads their finished episodes
_LIVE: dict[str, dict[str, Any]] = {}


def _make_env(env_config: dict[str, Any]) -> TokenMathEnv:
    live = _LIVE[env_config["key"]]
    env = TokenMathEnv(MathReasoningEnv(ListProblemSource(live["problems"], name="self_improve"),
                                        build_critic(CriticConfig(name="none")),
                                        EnvConfig(action_unit="step", max_refinements=0)),
                       live["tokenizer"], live["template"], max_length=live["max_length"])
    live["envs"].append(env)
    return env


class RLlibPPO(SelfImprover):
    """``rllib_ppo``: RLlib's PPO on the token-level environment, the verifier's reward (sparse)."""

    _algo: Any = None
    _envs: list[TokenMathEnv]

    def iteration(self, i: int) -> IterationSummary:
        c, p, started = self.config, self.config.ppo, time.perf_counter()
        problems = self._problems(i)
        algo = self._build()
        for env in self._envs:  # this iteration's problems (the curriculum's), and fresh episode lists
            env.unwrapped.problems = ListProblemSource(problems, name="self_improve")
            env.finished.clear()
        # equal budget: as many episodes as the other algorithms' generations, here counted in token timesteps
        target, results = c.budget, []
        while sum(len(env.finished) for env in self._envs) < target:
            results.append(algo.train())
        finished = [x for env in self._envs for x in env.finished][:target]
        episodes: list[EpisodeRecord] = [record for record, _ in finished]
        module = algo.get_module()
        model, _ = trainable(self.actor.backend)
        model.load_state_dict(module.lm.state_dict())
        model.eval()
        self.runner.set_weights(model)
        self._save_model(model, i)
        seen: dict[str, set[tuple[str, ...]]] = {}
        for r in episodes:
            seen.setdefault(r.problem.id, set())
            if r.correct:
                seen[r.problem.id].add(tuple(r.steps))
        self.rates.update(episodes)
        learner = [r.get("learners", {}).get("default_policy", {}) for r in results]
        summary = self._measure(i, {
            "problems": len(problems), "generations": len(episodes), "budget": c.budget,
            "exploration": round(sum(bool(v) for v in seen.values()) / len(problems), 4),
            "diversity": round(sum(len(v) for v in seen.values()) / len(problems), 4),
            "tokens": sum(tokens for _, tokens in finished),
            "restarts": [],
            "extra": {"ppo_iterations": len(results), "policy_loss": learner[-1].get("policy_loss") if learner else None,
                      "vf_loss": learner[-1].get("vf_loss") if learner else None,
                      "mean_reward": round(sum(r.correct for r in episodes) / len(episodes), 4) if episodes else None,
                      "levels": sorted({q.difficulty for q in problems}), "max_length": p.max_length},
        }, started)
        self._save(i, summary)
        return summary

    def _build(self) -> Any:
        """The RLlib algorithm, built once: env runner and learner in this process."""
        if self._algo is not None:
            return self._algo
        import ray
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec
        from ray.tune.registry import register_env

        if not ray.is_initialized():
            init_ray(RayConfig(num_workers=1))
        p = self.config.ppo
        model, tokenizer = trainable(self.actor.backend)
        checkpoint = self.out_dir / "ppo_start"
        if not checkpoint.exists():
            model.save_pretrained(checkpoint)
            tokenizer.save_pretrained(checkpoint)
        key = f"critique_gym_tokens_{id(self)}"
        _LIVE[key] = {"problems": self._problems(1), "tokenizer": tokenizer, "template": self.actor.template,
                      "max_length": p.max_length, "envs": []}
        self._envs = _LIVE[key]["envs"]
        register_env(key, _make_env)
        config = (PPOConfig()
                  .environment(key, env_config={"key": key})
                  .framework("torch")
                  .env_runners(num_env_runners=0, num_envs_per_env_runner=p.envs, rollout_fragment_length=p.fragment)
                  .learners(num_learners=0)
                  .training(lr=p.learning_rate, train_batch_size_per_learner=p.batch_timesteps,
                            minibatch_size=p.minibatch, num_epochs=p.epochs, entropy_coeff=p.entropy_coeff,
                            gamma=1.0, lambda_=p.gae_lambda, clip_param=p.clip)
                  .rl_module(rl_module_spec=RLModuleSpec(module_class=_rl_module_class(),
                                                         model_config={"checkpoint": str(checkpoint)}))
                  .debugging(seed=self.seed))
        self._algo = config.build_algo()
        return self._algo

    def _save_model(self, model: Any, i: int) -> None:
        _, tokenizer = trainable(self.actor.backend)
        with atomic_directory(self.out_dir / f"iter_{i}" / "model") as folder:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
