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


def test_critique_loop_trajectories_become_corrected_transcripts():
    """A kept refinement of the critique loop (the sample, the critic's critique, the verified refinement that
    kept the steps before the flag) is a transcript that catches the flagged step and fixes it."""
    from core.episode import Attempt
    from trainers.self_talk import SelfTalkConfig, build_transcripts, trajectory_rows

    oracle, rng, kept = OracleCritic(), random.Random(3), []
    for p in PROBLEMS[:6]:
        bad = corrupt_solution(p, rng.randint(1, p.difficulty), "calculation", rng).steps
        attempt = Attempt(list(bad), oracle.critique(p, bad), oracle.critique(p, bad).first_error_step - 1)
        # as trainers/self_improve.py writes a kept refinement (plus a solve row, which is not a trajectory)
        kept += [{"id": p.id, "kind": "refine", "prompt": "…", "completion": "…", "steps": list(p.steps),
                  "question": p.question, "flawed": attempt.steps, "critique": attempt.critique.render()},
                 {"id": p.id, "kind": "solve", "prompt": "…", "completion": "…", "steps": list(p.steps)}]
    rows = trajectory_rows(kept)
    assert len(rows) == 6 and all(r["origin"] == "self_improve" for r in rows)
    examples, stats = build_transcripts(_rows() + rows, SelfTalkConfig(examples=40, correction_share=0.5))
    assert stats["by_source"] == {"critique_data": {"rows": 40, "correct": 20, "corrected": 20},
                                  "self_improve": {"rows": 6, "correct": 0, "corrected": 6}}
    fixed = {p.question: p for p in PROBLEMS[:6]}
    for e in examples:
        if e["kind"] == "corrected" and e["question"] in fixed:
            talk = parse("\n".join(e["lines"]))
            assert talk.well_formed and talk.corrections == 1 and talk.steps == list(fixed[e["question"]].steps)
    # a configured source that gave nothing is reported, not left out
    _, empty = build_transcripts(_rows(), SelfTalkConfig(examples=8))
    assert empty["by_source"]["self_improve"] == {"rows": 0, "correct": 0, "corrected": 0}
    with pytest.raises(ValueError, match="sources"):
        SelfTalkConfig(sources=["critique_data", "elsewhere"])


def test_instruct_models_are_asked_for_the_self_talk_format():
    from agents.prompts import SELF_TALK_PROMPT, SOLVE_PROMPT, ChatTemplate, PromptTemplate

    class Tokenizer:  # the chat template's one call
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    chat = ChatTemplate(Tokenizer())
    talk = chat.with_self_talk()
    assert talk.prompt("What is 2+3?") == "<user>" + SELF_TALK_PROMPT.format(question="What is 2+3?") + "<assistant>"
    assert chat.prompt("What is 2+3?") == "<user>" + SOLVE_PROMPT.format(question="What is 2+3?") + "<assistant>"
    assert "Check: " in SELF_TALK_PROMPT and "Fix: " in SELF_TALK_PROMPT
    tiny = PromptTemplate(number_format="reversed")
    assert tiny.with_self_talk() == tiny  # the tiny model learns the format from its SFT alone


def test_the_papers_refinement_rows_become_transcripts():
    """The released refinement rows (real Llama-3 attempts, GPT-4o critiques, refinements): attempts as quoted,
    refinements without the attempt's preamble; what cannot be aligned is dropped and counted."""
    from trainers.self_talk import SelfTalkConfig, build_transcripts, paper_rows

    rows = paper_rows("data://mathcritique/llama3-8b-gsm8k-refinement-samples.json")
    assert len(rows) == 100 and all(r["origin"] == "rows" and "<<" not in " ".join(r["steps"][:-1]) for r in rows)
    assert not any(r["reference"][0].endswith("step by step:") or "\\n" in "".join(r["reference"]) for r in rows)
    config = SelfTalkConfig(sources=["rows"], rows="data://…", examples=20, correction_share=1.0)
    examples, stats = build_transcripts(rows, config)
    pools = stats["by_source"]["rows"]
    assert pools["corrected"] >= 30 and pools["correct"] + pools["corrected"] + sum(stats["dropped"].values()) == 100
    for e in examples:
        talk = parse("\n".join(e["lines"]))
        assert talk.well_formed and talk.corrections == 1 and talk.answer.startswith("The answer is")
    with pytest.raises(ValueError, match="self_talk.rows names no file"):
        SelfTalkConfig(sources=["rows"])
