"""The warm-up's refine-tune: refinement examples from the actor's own mistakes, and the stage that trains on them."""

import json
import random

import pytest

from agents.prompts import PromptTemplate
from core.episode import Attempt, EpisodeRecord
from core.verification import VerificationResult
from critics.oracle import OracleCritic
from envs.synthetic import SyntheticArithmetic, corrupt_solution
from pipeline import ConfigError, load_config, run_stages
from pipeline.checkpoints import SHIPPED_ACTOR
from pipeline.checks import check_config
from trainers.refine_tune import own_error_refinements


def _cut_record(problem, steps):
    critique = OracleCritic().critique(problem, steps)
    return EpisodeRecord(problem, steps=list(steps), attempts=[Attempt(list(steps), critique, critique.first_error_step - 1)])


def test_own_mistakes_become_refinements_toward_the_reference():
    template = PromptTemplate(number_format="reversed")
    problems = SyntheticArithmetic(size=3, min_steps=4, max_steps=4, split="train", seed=5)[:]
    bad = corrupt_solution(problems[0], 3, "calculation", random.Random(0)).steps
    wrong = _cut_record(problems[0], bad)
    other_route = _cut_record(problems[1], corrupt_solution(problems[1], 3, "operand", random.Random(1)).steps)
    other_route.attempts[0].steps[0] = other_route.attempts[0].steps[0].replace("Step 1:", "Step 1: so")
    right = EpisodeRecord(problems[2], verification=VerificationResult("1", "1", True, "answer_line", "match"))

    rows, counts = own_error_refinements([wrong, other_route, right], template)

    assert counts == {"first_attempt_right": 1, "kept_steps_not_the_reference": 1, "level_4": 1}
    (row,) = rows
    cut = wrong.attempts[0].cut_at
    assert cut == 2  # the oracle flags the corrupted step 3; steps 1-2 are kept
    assert row["completion"] == template.completion(list(problems[0].steps[cut:]))  # the reference from step 3
    assert row["prompt"].endswith(template.solution_lines(list(problems[0].steps[:cut])))
    assert "Step 3 is wrong" in row["prompt"]  # the oracle's feedback on the flagged step


def _refine_tuned(run_dir, *overrides):
    cfg = load_config([f"run_dir={run_dir}", "stages=[warmup]", "tracking.mode=disabled",
                       "actor.refine_tune.problems_per_level=12", "actor.refine_tune.levels=[7,8]",
                       "actor.refine_tune.replay=16", "actor.refine_tune.train_steps=2",
                       "actor.refine_tune.batch_size=4", *overrides])
    return run_stages(cfg)["warmup"]["refine_tune"]


def test_the_warmup_refine_tunes_the_actor_on_its_own_mistakes(tmp_path):
    run_dir = tmp_path / "run"
    result = _refine_tuned(run_dir)
    episodes = result["episodes"]
    assert sum(episodes.values()) == 24
    assert result["own_error_examples"] == episodes.get("level_7", 0) + episodes.get("level_8", 0) > 0
    assert result["replay_examples"] == 16
    recipe = json.loads((run_dir / "actor" / "recipe.json").read_text())
    assert recipe["recipe"]["num_problems"] == 60000  # the warm-up's recipe stays readable for later replay
    assert recipe["refine_tune"]["own_error_examples"] == result["own_error_examples"]
    assert (run_dir / "actor" / "model.safetensors").read_bytes() != (SHIPPED_ACTOR / "model.safetensors").read_bytes()


def test_the_control_swaps_each_own_mistake_for_a_warmup_example(tmp_path):
    tuned, control = _refine_tuned(tmp_path / "a"), _refine_tuned(tmp_path / "b", "actor.refine_tune.own_errors=false")
    assert control["episodes"] == tuned["episodes"]  # the same samples and critiques
    assert control["own_error_examples"] == 0 and control["own_errors_found"] == tuned["own_error_examples"]
    assert control["replay_examples"] == 16 + tuned["own_error_examples"]


def test_refine_tune_refuses_what_it_cannot_tune():
    given = load_config(["stages=[warmup]", "actor.model=checkpoints/tiny-actor", "actor.refine_tune.problems_per_level=4"])
    assert any("actor.refine_tune tunes the warm-up's actor" in e for e in check_config(given))
    real = load_config(["stages=[warmup]", "problems=gsm8k", "actor.refine_tune.problems_per_level=4"])
    assert any("problems=gsm8k gives final answers only" in e for e in check_config(real))
    with pytest.raises(ConfigError, match="refine_tune"):
        load_config(["actor.refine_tune.train_steps=-1"])
