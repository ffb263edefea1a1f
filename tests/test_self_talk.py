import random

import pytest

from critics import OracleCritic
from critics.self_talk import MAX_SELF_TALK_CHARS, Turn, correct_transcript, corrected_transcript, parse, render
from envs import SyntheticArithmetic, corrupt_solution

PROBLEMS = SyntheticArithmetic(size=20, min_steps=2, max_steps=6, split="train", seed=4)[:]


def test_render_and_parse_round_trip():
    turns = [Turn("Step 1: 29+22=51", "29+22=51", True),
             Turn("Step 2: 51*3=160", "51*3=153", False, "Step 2: 51*3=153", "51*3=153", True),
             Turn("Step 3: 153+24=177", "", True)]
    lines = render(turns, "Answer: 177")
    assert lines[3:6] == ["Check: 51*3=153 wrong", "Fix: Step 2: 51*3=153", "Check: 51*3=153 correct"]
    assert lines[7] == "Check: correct"
    talk = parse("\n".join(lines))
    assert talk.well_formed and list(talk.turns) == turns and talk.answer == "Answer: 177"
    assert talk.steps == ["Step 1: 29+22=51", "Step 2: 51*3=153", "Step 3: 153+24=177", "Answer: 177"]
    assert talk.written[1] == "Step 2: 51*3=160" and talk.corrections == 1
    critique = talk.critique()
    assert critique.first_error_step == 2 and critique.steps[1].check == "51*3=153"
    with pytest.raises(ValueError, match="a fix needs a wrong check"):
        render([Turn("Step 1: 1+1=2", "1+1=2", True, "Step 1: 1+1=3")], "Answer: 3")


@pytest.mark.parametrize("text, problem", [
    ("Step 1: 2+2=4\nCheck: 2+2=4 correct\nStep 2: 4*2=8", "truncated: no answer line"),
    ("Check: 2+2=4 correct\nStep 1: 2+2=4\nAnswer: 4", "line 1: a check with no step before it"),
    ("Step 1: 2+2=4\nCheck: 2+2=4 correct\nCheck: 2+2=4 correct\nAnswer: 4", "line 3: a check with no step"),
    ("Step 1: 2+2=4\nCheck: 2+2=4 correct\nFix: Step 1: 2+2=5\nAnswer: 4", "line 3: a fix with no wrong check"),
    ("Step 1: 2+2=5\nFix: Step 1: 2+2=4\nAnswer: 4", "line 2: a fix with no wrong check"),
    ("Step 1: 2+2=4\nCheck: 2+2=4 maybe\nAnswer: 4", "line 2: a check without a verdict"),
])
def test_malformed_transcripts_are_recorded_and_the_rest_kept(text, problem):
    talk = parse(text)
    assert not talk.well_formed and any(p.startswith(problem) for p in talk.problems), talk.problems
    assert talk.turns and talk.turns[0].step.startswith("Step 1")


def test_a_huge_transcript_is_cut_and_said_so():
    text = "Step 1: 1+1=2\nCheck: " + "9" * 100_000 + " correct\nAnswer: 2"
    talk = parse(text)
    assert talk.problems[0].startswith("over-long: 100,") and str(MAX_SELF_TALK_CHARS)[:2] in talk.problems[0]
    assert talk.answer is None and "truncated: no answer line" in talk.problems
    assert parse(None).problems == ("not text: NoneType",)


def test_transcripts_from_critique_data_parse_back_to_the_corrected_solution():
    oracle, rng = OracleCritic(), random.Random(0)
    for p in PROBLEMS:
        right = correct_transcript(p.steps, oracle.critique(p, p.steps))
        talk = parse("\n".join(right))
        assert talk.well_formed and talk.steps == list(p.steps) and talk.corrections == 0
        assert all(t.correct and t.check for t in talk.turns)  # the oracle's own recomputation on every line
        k = rng.randint(1, p.difficulty)
        bad = corrupt_solution(p, k, "calculation", rng).steps
        critique = oracle.critique(p, bad)
        lines = corrected_transcript(bad, critique, p.steps, oracle.critique(p, p.steps))
        talk = parse("\n".join(lines))
        first = critique.first_error_step
        assert talk.well_formed and talk.steps == list(p.steps) and talk.corrections == 1
        assert talk.written[first - 1] == bad[first - 1] and talk.critique().first_error_step == first
    with pytest.raises(ValueError, match="flags no step"):
        corrected_transcript(p.steps, oracle.critique(p, p.steps), p.steps)
    with pytest.raises(ValueError, match="ends with its answer line"):
        correct_transcript(p.steps[:-1])


def test_the_environment_reads_a_transcript_into_the_solution_and_keeps_the_self_critique():
    from gymnasium.utils.env_checker import check_env

    from core.problem import ListProblemSource
    from envs import EnvConfig, MathReasoningEnv

    p, oracle = PROBLEMS[3], OracleCritic()
    bad = corrupt_solution(p, 1, "calculation", random.Random(1)).steps
    transcript = "\n".join(corrected_transcript(bad, oracle.critique(p, bad), p.steps))
    env = MathReasoningEnv(ListProblemSource([p]), critic=oracle, config=EnvConfig(action_format="self_talk"))
    check_env(env, skip_render_check=True)
    env.reset(options={"index": 0})
    _, reward, terminated, _, info = env.step(transcript)
    record = info["record"]
    assert terminated and reward == 1.0 and record.steps == list(p.steps) and not record.action_errors
    [attempt] = record.attempts
    assert attempt.steps[0] == bad[0] and attempt.critique.first_error_step == 1 and attempt.critique.extras["self_talk"]
    assert record.refinement_rounds == 0  # no outside critic was asked: the transcript carried its own checks
    # a malformed transcript is recorded, scored on what it stands for (the verifier's rules), never raised
    env.reset(options={"index": 0})
    _, _, terminated, _, info = env.step("Check: 1+1=2 correct\n" + "\n".join(p.steps[:-1]))
    assert terminated and info["record"].steps == list(p.steps[:-1])
    assert info["record"].action_errors[0].startswith("self-talk: line 1: a check")
    assert "truncated: no answer line" in info["record"].action_errors[0]
    with pytest.raises(ValueError, match="needs action_unit='solution'"):
        EnvConfig(action_format="self_talk", action_unit="step")


def _rows():
    """Critique rows as critique_data writes them: right responses, flawed ones with the reference."""
    oracle, rng, rows = OracleCritic(), random.Random(2), []
    for p in PROBLEMS:
        bad = corrupt_solution(p, rng.randint(1, p.difficulty), "calculation", rng).steps
        for steps in (p.steps, bad):
            c = oracle.critique(p, steps)
            rows.append({"question": p.question, "steps": list(steps), "critique": c.render(),
                         "is_correct": c.is_correct, "answer_correct": steps == p.steps, "reference": list(p.steps)})
    return rows


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_the_correction_share_knob_sets_what_is_built(share):
    from trainers.self_talk import SelfTalkConfig, build_transcripts

    rows = _rows() + [{"question": "q", "steps": ["Step 1: 1+1=2"], "critique": "not a critique", "is_correct": True},
                      {"question": "q", "steps": ["Step 1: 1+1=3", "Answer: 3"],
                       "critique": "Step 1: 1+1=2 wrong\nFinal answer: wrong\nVerdict: wrong, first error at step 1",
                       "is_correct": False, "reference": []}]
    examples, stats = build_transcripts(rows, SelfTalkConfig(examples=40, correction_share=share))
    assert len(examples) == 40 and stats["built"].get("corrected", 0) == round(40 * share)
    assert stats["correction_share"] == share and stats["pools"] == {"correct": 20, "corrected": 20}
    assert stats["dropped"] == {"unreadable critique": 1, "flawed, no corrected solution": 1}
    for e in examples:
        talk = parse("\n".join(e["lines"]))
        assert talk.well_formed and talk.corrections == (e["kind"] == "corrected")
    assert build_transcripts(rows, SelfTalkConfig(examples=40, correction_share=share))[0] == examples  # seeded
    with pytest.raises(ValueError, match="correction_share"):
        SelfTalkConfig(correction_share=1.5)
