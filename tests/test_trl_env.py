"""The environment inside a user's own TRL GRPOTrainer (trainers/trl_env.py: env_rollout_func)."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.prompts import PromptTemplate
from core.sampling import SamplingParams
from critics import OracleCritic
from envs import SyntheticArithmetic
from pipeline.checkpoints import SHIPPED_ACTOR
from trainers.trl_env import env_rollout_func, episode_reward, grpo_dataset


def test_a_users_grpo_trainer_learns_from_environment_episodes(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model = AutoModelForCausalLM.from_pretrained(SHIPPED_ACTOR)
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED_ACTOR)
    template = PromptTemplate(number_format="reversed")
    problems = SyntheticArithmetic(size=4, min_steps=6, max_steps=8, split="train", seed=11)[:]  # outcomes differ
    play = env_rollout_func(problems, tokenizer, template, critic=OracleCritic(),
                            sampling=SamplingParams(max_new_tokens=96, temperature=1.0, seed=0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=96, learning_rate=1e-3, beta=0.0, report_to="none", use_cpu=True,
                      save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=episode_reward(0.5), args=args,
                          train_dataset=Dataset.from_list(grpo_dataset(problems, template)), rollout_func=play)
    trainer.train()
    # every completion TRL trained on was an episode of the environment, played with the trainer's own model and
    # reviewed by the critic; the reward it logged is the verifier's plus half the critic's accepted share
    assert len(play.episodes) == 4 and all(r.attempts and r.done for r in play.episodes)
    assert {r.problem.metadata["replica_of"] for r in play.episodes} <= {p.id for p in problems}
    assert play.runner.model is trainer.model
    logged = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    expected = [float(r.correct) + 0.5 * _share(r) for r in play.episodes]
    assert logged and abs(logged[0] - sum(expected) / len(expected)) < 1e-4
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def _share(record):
    from trainers.trl_env import accepted_share

    return accepted_share(record)
