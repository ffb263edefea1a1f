import random

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs
from critics import NullCritic, OracleCritic
from envs import MathReasoningEnv, ScriptedActor, SyntheticArithmetic, corrupt_solution, load_math, run_episode


def make(critic=None, **kw):
    kw.setdefault("action_unit", "step")
    return MathReasoningEnv(SyntheticArithmetic(size=40, min_steps=2, max_steps=5, seed=0),
                            critic or OracleCritic(), **kw)


@pytest.mark.parametrize("kw", [{}, {"action_unit": "solution", "critique_timing": "step"},
                                {"action_unit": "solution", "critique_timing": "final"}])
def test_check_env_passes(kw):
    check_env(make(**kw), skip_render_check=True)


def test_each_environment_samples_from_its_own_spaces():
    """Spaces are copied from one built per length: each environment's are its own objects with their own
    sampler, and they accept the same texts."""
    a, b = MathReasoningEnv(), MathReasoningEnv()
    assert a.action_space is not b.action_space
    assert a.observation_space["steps"] is not b.observation_space["steps"]
    a.action_space.seed(3)
    b.action_space.seed(3)
    first = a.action_space.sample()
    a.action_space.sample()
    assert b.action_space.sample() == first  # a's draws did not move b's sampler
    assert a.action_space.contains("Step 1: 2+2=4") and b.action_space == a.action_space


def test_registered_with_gymnasium():
    env = gym.make(envs.ENV_ID, critic=OracleCritic(), max_refinements=1)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"problem", "steps", "feedback"} and info["record"].problem.question == obs["problem"]
    assert env.unwrapped.config.max_refinements == 1


def test_scripted_correct_solution_gets_reward_one():
    env = make(NullCritic())
    record = run_episode(env, ScriptedActor(), seed=3)
    assert record.correct and record.total_reward == 1.0 and record.final_answer == record.problem.answer


def test_wrong_solution_gets_reward_zero_without_a_critic():
    record = run_episode(make(NullCritic()), ScriptedActor(error_step=1), seed=3)
    assert not record.correct and record.total_reward == 0.0 and record.refinement_rounds == 0


def test_oracle_feedback_cuts_back_and_the_actor_recovers():
    env = make(OracleCritic(), max_refinements=2)
    obs, info = env.reset(options={"index": 5})
    problem = info["record"].problem
    bad = corrupt_solution(problem, 2, "calculation", random.Random(0))
    for line in bad.steps:
        obs, reward, terminated, truncated, info = env.step(line)
    assert info["refined"] and not terminated and reward == 0.0
    assert obs["steps"].split("\n") == list(problem.steps[:1])
    assert obs["feedback"].startswith("Step 2 is wrong")
    assert info["critique"].first_error_step == 2
    for line in problem.steps[1:]:
        obs, reward, terminated, truncated, info = env.step(line)
    assert terminated and reward == 1.0 and obs["feedback"] == ""
    record = info["record"]
    assert record.refinement_rounds == 1 and len(record.attempts) == 2
    assert record.attempts[0].cut_at == 1 and record.attempts[1].cut_at is None
    assert record.to_dict()["attempts"][0]["critique"]["first_error_step"] == 2


def test_refinement_budget_is_bounded():
    env = make(OracleCritic(), max_refinements=1)
    _, info = env.reset(options={"index": 3})
    problem = info["record"].problem
    bad = corrupt_solution(problem, 1, "calculation", random.Random(0))
    env.step("\n".join(bad.steps))
    _, reward, terminated, _, info = env.step("\n".join(bad.steps))  # repeats its mistake
    assert terminated and reward == 0.0 and info["refinement_rounds"] == 1


def test_a_whole_solution_without_an_answer_line_is_final():
    env = make(OracleCritic(), action_unit="solution", max_refinements=0)
    _, info = env.reset(options={"index": 0})
    _, reward, terminated, _, info = env.step("\n".join(info["record"].problem.steps[:-1]))
    assert terminated and info["record"].verification is not None


def test_whole_solution_actions_with_step_critique():
    env = make(OracleCritic(), action_unit="solution", critique_timing="step")
    _, info = env.reset(options={"index": 0})
    _, reward, terminated, _, _ = env.step("\n".join(info["record"].problem.steps))
    assert terminated and reward == 1.0


def test_step_critique_flags_errors_before_the_answer():
    env = make(OracleCritic(), critique_timing="step")
    _, info = env.reset(options={"index": 4})
    problem = info["record"].problem
    bad = corrupt_solution(problem, 1, "calculation", random.Random(0))
    obs, _, _, _, info = env.step(bad.steps[0])
    assert info["refined"] and obs["steps"] == "" and obs["feedback"].startswith("Step 1 is wrong")


def test_turn_budget_truncates():
    env = make(NullCritic(), max_turns=3)
    env.reset(seed=0)
    for _ in range(2):
        _, _, terminated, truncated, _ = env.step("thinking...")
        assert not terminated and not truncated
    _, reward, terminated, truncated, info = env.step("still thinking")
    assert truncated and not terminated and reward == 0.0 and info["final_answer"] is None


def test_bad_actions_are_reported_and_penalised():
    env = make(NullCritic(), invalid_action_penalty=0.1, max_action_chars=20)
    env.reset(seed=0)
    _, r, *_, info = env.step("")
    assert r == pytest.approx(-0.1) and info["action_error"] == "empty action"
    _, r, *_, info = env.step(None)
    assert r == pytest.approx(-0.1) and "not text" in info["action_error"]
    _, r, *_, info = env.step("Step 1: " + "9" * 100)
    assert info["action_over_long"] and r == pytest.approx(-0.1)
    assert info["record"].steps[-1] == "Step 1: " + "9" * 100  # kept whole: never a cut number
    assert "108 characters, max_action_chars=20" in info["action_error"]
    _, _, terminated, _, info = env.step("Answer: 3\nmore text")
    assert terminated and "after the answer line ignored" in info["action_error"]


def test_observations_fit_their_space_for_real_problems(data_dir):
    env = MathReasoningEnv(load_math(limit=100), NullCritic())
    for i in range(100):
        obs, _ = env.reset(options={"index": i})
        assert env.observation_space.contains(obs)


def test_step_after_the_end_is_an_error():
    env = make(NullCritic())
    env.reset(seed=0)
    env.step("Answer: 1")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("Answer: 2")


def test_same_seed_same_episode():
    a, b = make(), make()
    assert a.reset(seed=42)[0] == b.reset(seed=42)[0]


action_text = st.one_of(
    st.text(max_size=700),
    st.text(alphabet="Step:0123456789+-*/= \nAnswer", max_size=200),
    st.sampled_from(["", " ", "\n\n", "Answer:", "Answer: \\boxed{", "Step 1: 1/0=1", "Step 1: 9**99999=1"]),
    st.none(), st.integers(), st.binary(max_size=20),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action_text, min_size=1, max_size=12), st.sampled_from(["step", "final"]))
def test_fuzzed_actions_never_raise(actions, timing):
    env = make(OracleCritic(), critique_timing=timing, max_turns=8, max_action_chars=300)
    obs, _ = env.reset(seed=1)
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float)
        if terminated or truncated:
            obs, _ = env.reset(seed=1)


def test_a_long_real_solution_is_kept_whole_and_scored_whole(data_dir):
    """A GSM8K solution longer than the action cap: the record says it was over, the verifier scores all of it."""
    from envs import load_gsm8k

    source = load_gsm8k(data_dir / "gsm8k" / "test.jsonl")
    problem = max(source, key=lambda p: len("\n".join(p.steps)))
    text = "\n".join(problem.steps)
    env = MathReasoningEnv(source, NullCritic(), max_action_chars=200)
    env.reset(options={"problem": problem})
    _, reward, terminated, _, info = env.step(text)
    assert len(text) > 200 and terminated and reward == 1.0
    assert info["action_over_long"] and "kept whole" in info["record"].action_errors[0]
