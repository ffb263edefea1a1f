"""The veRL interaction adapter: critic feedback as the user turn, the env's reward as the turn score."""

import asyncio
import importlib
import random
from pathlib import Path

import pytest
import yaml

from envs import SyntheticArithmetic, corrupt_solution
from rollout.interaction import CritiqueInteraction

CONFIG = Path(__file__).resolve().parent.parent / "docs" / "verl" / "interaction_config.yaml"
PROBLEM = SyntheticArithmetic(size=8, min_steps=4, max_steps=4, split="test", seed=2)[0]


def _play(interaction, messages):
    async def play():
        iid = await interaction.start_interaction(None, question=PROBLEM.question, ground_truth=PROBLEM.answer,
                                                  steps=list(PROBLEM.steps))
        turns, conversation = [], [{"role": "user", "content": PROBLEM.question}]
        for text in messages:
            conversation.append({"role": "assistant", "content": text})
            done, response, score, extra = await interaction.generate_response(iid, conversation)
            turns.append((done, response, score, extra))
            conversation.append({"role": "user", "content": response})
            if done:
                break
        final = await interaction.calculate_score(iid)
        record = interaction.record(iid)
        await interaction.finalize_interaction(iid)
        return turns, final, record, iid
    return asyncio.run(play())


def test_documented_config_builds_the_interaction_veRL_would():
    entry = yaml.safe_load(CONFIG.read_text())["interaction"][0]
    module, _, name = entry["class_name"].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    interaction = cls({"name": entry["name"], **entry["config"]})
    assert isinstance(interaction, CritiqueInteraction) and interaction.name == "critique_gym"
    assert interaction.env_config.max_refinements == 2


def test_a_flagged_step_is_the_response_and_the_fix_scores_the_verifiers_reward():
    interaction = CritiqueInteraction({"name": "critique_gym", "critic": "oracle", "env": {"max_refinements": 1}})
    bad = corrupt_solution(PROBLEM, 2, "calculation", random.Random(0))
    turns, final, record, iid = _play(interaction, ["\n".join(bad.steps), "\n".join(PROBLEM.steps[1:])])
    (done, response, score, _), (done2, response2, score2, extra2) = turns
    assert not done and score == 0.0 and "Steps 1-1 stand. Continue the solution from step 2." in response
    assert "Step 2" in response  # the oracle's feedback on the flagged step
    assert done2 and score2 == 1.0 and extra2["correct"] and extra2["refinements"] == 1
    assert "correct" in response2 and final == 1.0
    assert record.steps == list(PROBLEM.steps) and record.correct
    with pytest.raises(KeyError, match="start_interaction first"):
        interaction.record(iid)  # finalized


def test_without_rounds_left_a_wrong_answer_ends_the_trajectory_with_score_zero():
    interaction = CritiqueInteraction({"critic": "oracle", "env": {"max_refinements": 0}})
    bad = corrupt_solution(PROBLEM, 3, "calculation", random.Random(1))
    turns, final, record, _ = _play(interaction, ["\n".join(bad.steps)])
    assert [t[0] for t in turns] == [True] and turns[0][2] == 0.0 and final == 0.0 and not record.correct


def test_bad_config_and_rows_are_named():
    with pytest.raises(ValueError, match="critic_config: unknown keys \\['modle'\\]"):
        CritiqueInteraction({"critic": "model", "critic_config": {"modle": "x"}})
    interaction = CritiqueInteraction({"critic": "none"})
    with pytest.raises(ValueError, match="need 'question' and 'ground_truth'"):
        asyncio.run(interaction.start_interaction(None, question="2+2?"))
