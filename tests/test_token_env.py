"""The token-level view of the environment: numeric spaces any RL library can encode, the text env's episodes."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from agents.actor import ActorConfig, build_actor
from critics import OracleCritic
from envs import EnvConfig, ListProblemSource, MathReasoningEnv, SyntheticArithmetic, corrupt_solution
from rollout import TOKEN_ENV_ID, TokenMathEnv
from tests.conftest import ROOT

CHECKPOINT = str(ROOT / "checkpoints" / "tiny-actor")
PROBLEMS = SyntheticArithmetic(size=12, min_steps=2, max_steps=4, split="test", seed=7)[:]


@pytest.fixture(scope="module")
def actor():
    return build_actor(ActorConfig(batch_size=1, threads=1), CHECKPOINT)


def _envs(actor, problems, **config):
    text = MathReasoningEnv(ListProblemSource(problems), OracleCritic(), EnvConfig(action_unit="step", **config))
    tokens = TokenMathEnv(MathReasoningEnv(ListProblemSource(problems), OracleCritic(),
                                           EnvConfig(action_unit="step", **config)),
                          actor.backend.tokenizer, actor.template, max_length=256)
    return text, tokens


def _line_tokens(actor, line):
    return actor.backend.tokenizer(actor.template.solution_lines([line]), add_special_tokens=False)["input_ids"]


def test_the_token_env_passes_check_env_and_is_registered(actor):
    _, env = _envs(actor, PROBLEMS)
    check_env(env, skip_render_check=True)
    assert env.action_space == gymnasium.spaces.Discrete(len(actor.backend.tokenizer))
    obs, _ = env.reset(seed=0)
    n = int(obs["mask"].sum())
    prompt = actor.backend.tokenizer(actor.template.prompt(env.unwrapped.record.problem.question),
                                     add_special_tokens=False)["input_ids"]
    assert obs["tokens"][:n].tolist() == prompt and not obs["mask"][n:].any()
    made = gymnasium.make(TOKEN_ENV_ID, checkpoint=CHECKPOINT, problems={"size": 4, "min_steps": 2, "max_steps": 3})
    assert isinstance(made.unwrapped, MathReasoningEnv) and made.observation_space["tokens"].shape == (512,)
    with pytest.raises(ValueError, match="not a token id"):
        env.step(len(actor.backend.tokenizer))


@pytest.mark.parametrize("mistake", [None, 2])
def test_its_episodes_equal_the_text_envs_for_the_same_tokens(actor, mistake):
    """Lines fed token by token give the text env's record, rewards and critic feedback; the next observation
    is the prompt the actor would be given (the feedback, the steps kept before the flagged one)."""
    import random

    for i, p in enumerate(PROBLEMS[:6]):
        text, tokens = _envs(actor, [p], max_refinements=1)
        text.reset(seed=i)
        tokens.reset(seed=i)
        first = corrupt_solution(p, mistake, "calculation", random.Random(i)).steps if mistake else p.steps
        plan = list(first) + (list(p.steps[mistake - 1:]) if mistake else [])
        total_text = total_tokens = 0.0
        for line in plan:
            _, reward, term_a, trunc_a, _ = text.step(line)
            total_text += reward
            ids = _line_tokens(actor, line)
            for j, token in enumerate(ids):
                obs, reward, term_b, trunc_b, info = tokens.step(token)
                total_tokens += reward
                assert info["line_done"] == (j == len(ids) - 1)
            assert (term_a, trunc_a) == (term_b, trunc_b)
            if term_a or trunc_a:
                break
        a, b = text.record, tokens.unwrapped.record
        assert (a.steps, a.correct, a.refinement_rounds, a.turns) == (b.steps, b.correct, b.refinement_rounds, b.turns)
        assert [x.critique for x in a.attempts] == [x.critique for x in b.attempts] and total_text == total_tokens
        assert b.correct and (b.refinement_rounds == (1 if mistake else 0))


def test_feedback_reaches_the_next_observation_and_a_full_context_truncates(actor):
    import random

    p = PROBLEMS[3]
    _, env = _envs(actor, [p], max_refinements=1)
    env.reset(seed=0)
    bad = corrupt_solution(p, 1, "calculation", random.Random(0)).steps
    for line in bad:
        for token in _line_tokens(actor, line):
            obs, *_ , info = env.step(token)
    assert info["refined"]
    seen = actor.template.decode(actor.backend.tokenizer.decode(obs["tokens"][obs["mask"] == 1].tolist()))
    assert info["record"].attempts[-1].critique.feedback_for(1) in seen or "Feedback" in seen
    short = TokenMathEnv(MathReasoningEnv(ListProblemSource([p]), OracleCritic(), EnvConfig(action_unit="step")),
                         actor.backend.tokenizer, actor.template, max_length=40, max_line_tokens=1000)
    obs, _ = short.reset(seed=0)
    digit = actor.backend.tokenizer("1", add_special_tokens=False)["input_ids"][0]
    truncated = False
    for _ in range(40):
        obs, _, terminated, truncated, _ = short.step(digit)
        if truncated:
            break
    assert truncated and not terminated and np.all(obs["mask"] == 1)
    with pytest.raises(ValueError, match="action_unit='step'"):
        TokenMathEnv(MathReasoningEnv(ListProblemSource([p])), actor.backend.tokenizer)


def test_the_policy_reads_only_the_tokens_that_are_there(actor):
    """The RLModule cuts the observation at the longest row: its logits equal the causal LM's on the full padded
    width at each row's last token (a left-aligned row attends to nothing after it)."""
    import torch
    from ray.rllib.core.columns import Columns

    from trainers.rllib_ppo import _rl_module_class

    env = TokenMathEnv(MathReasoningEnv(ListProblemSource(SyntheticArithmetic(size=1, seed=0)[:]),
                                        config=EnvConfig(action_unit="step")), actor.backend.tokenizer, max_length=64)
    module = _rl_module_class()(observation_space=env.observation_space, action_space=env.action_space,
                                model_config={"checkpoint": str(ROOT / "checkpoints" / "tiny-actor")})
    lengths = [5, 17, 30]
    tokens, mask = torch.zeros(3, 64, dtype=torch.long), torch.zeros(3, 64, dtype=torch.int8)
    for row, n in enumerate(lengths):
        tokens[row, :n], mask[row, :n] = torch.randint(3, 300, (n,), generator=torch.Generator().manual_seed(row)), 1
    with torch.no_grad():
        got = module._forward({Columns.OBS: {"tokens": tokens, "mask": mask}})[Columns.ACTION_DIST_INPUTS]
        full = module.lm(input_ids=tokens, attention_mask=mask.long()).logits
    for row, n in enumerate(lengths):
        assert torch.allclose(got[row], full[row, n - 1], atol=1e-4)


@pytest.mark.slow
def test_rllib_ppo_trains_the_actor_on_the_token_env_from_train_py(tmp_path):
    """``algo=rllib_ppo``: RLlib's PPO steps the token-level env with the actor as policy; the iteration writes
    the same per-iteration metrics as the other algorithms, and the actor's weights moved."""
    import json
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), f"run_dir={run_dir}", "stages=[warmup,self_improve]", "algo=rllib_ppo",
           "self_improve=plain", "self_improve.iterations=1", "self_improve.problems_per_iteration=2",
           "self_improve.samples_per_problem=1", "self_improve.eval_problems_per_level=1",
           "self_improve.ppo.batch_timesteps=64", "self_improve.ppo.minibatch=32", "self_improve.ppo.fragment=32",
           "self_improve.ppo.envs=2",
           "self_improve.ppo.max_length=128", "problems.max_steps=2", "tracking.mode=disabled", "ray.enabled=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    history = json.loads((run_dir / "results" / "self_improve.json").read_text())["metrics"]["history"]["rllib_ppo"]
    assert len(history) == 2 and history[1]["generations"] >= 2 and history[1]["tokens"] > 0
    assert {"heldout", "exploration", "diversity"} <= set(history[1]) and history[1]["ppo_iterations"] >= 1
    assert (run_dir / "self_improve" / "rllib_ppo" / "iter_1" / "model" / "model.safetensors").exists()
