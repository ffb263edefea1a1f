"""Parsers of model text never hang or crash: every malformed input is the documented parse error, in linear time."""

import json
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autocritique.annotate import read_critique
from core.critique import MAX_CRITIQUE_CHARS, Critique, CritiqueParseError, StepJudgement
from critics import NullCritic, OracleCritic
from critics.model_critic import parse_model_text, parse_whole_critique
from critics.paper_format import RowFormatError, from_paper_text, from_refinement_row, from_row
from envs import EnvConfig, MathReasoningEnv, SyntheticArithmetic, corrupt_solution
from rewards.answer import extract_answer, renumber_steps, split_solution
from rewards.steps import find_computations
from rewards.verifier import verify_response

CRITIQUE_PARSERS = {
    "Critique.parse": lambda t: Critique.parse(t, num_steps=3),
    "parse_whole_critique": lambda t: parse_whole_critique(t, 3),
    "parse_model_text": lambda t: parse_model_text(t, ["Step 1: 1+1=2", "Answer: 2"]),
    "read_critique": lambda t: read_critique(t, 3),
    "from_paper_text": from_paper_text,
    "from_row": lambda t: from_row({"instruction": "Review this.", "output": t}),
}
TEXT_READERS = {  # these return "nothing found" instead of raising
    "extract_answer": extract_answer,
    "verify_response": lambda t: verify_response(t, "5"),
    "split_solution": lambda t: split_solution(t) if isinstance(t, str) else None,
    "renumber_steps": lambda t: renumber_steps(t.splitlines()) if isinstance(t, str) else None,
    "find_computations": lambda t: find_computations(t) if isinstance(t, str) else None,
}

PATHOLOGICAL = [
    "Step 1: " + " " * 100_000 + "x",                          # regex backtracking
    "Step 1: " + " " * 2_000 + "x",
    "9" * 5_000,                                               # int() refuses past 4,300 digits
    "Step " + "9" * 5_000 + ": 1+1=2 correct\nVerdict: correct",
    "Verdict: wrong, first error at step " + "9" * 5_000,
    "Step 1: 1+1=2 correct\n" * 4_000 + "Verdict: correct",
    "\u2028".join(["Step 1: 2+2=4 correct"] * 3) + "\u2029Verdict: correct",  # unicode line separators
    "Step 1: 2+2=4 correct\x85Final answer: correct\x0bVerdict: correct",
    "\\boxed{" * 30_000,
    "(" * 50_000,
    "<<" + "1+" * 30_000 + "=2>>",
    "answer is " + " " * 100_000 + "5",
    "A: " + "9" * 5_000,
    "x" * 100_000,
    "Step 1: 1+1=2 | says 1+1=2 | " + "=1 " * 30_000 + "| correct",
    "Step sentence: " + "a" * 100_000,
]
ODD = [None, b"Step 1: 1+1=2 correct", ["Verdict: correct"], 12, {"text": "x"}, "", "   "]


def _call(parse, text, allowed=(CritiqueParseError,)):
    start = time.perf_counter()
    try:
        parse(text)
    except allowed:
        pass
    return time.perf_counter() - start


@pytest.mark.parametrize("name", list(CRITIQUE_PARSERS) + list(TEXT_READERS))
def test_pathological_and_odd_inputs_are_a_parse_error_within_a_second(name):
    parse = CRITIQUE_PARSERS.get(name) or TEXT_READERS[name]
    slow = {repr(t[:40]): s for t in PATHOLOGICAL + ODD if (s := _call(parse, t)) > 1.0}
    assert slow == {}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.text(max_size=400),
    st.text(alphabet="Step 0123456789:|=+-*/correctwrongVerdictfirsterroratHintFinalanswer\n \u2028#A.$\\{}", max_size=600),
    st.binary(max_size=50), st.none(), st.lists(st.text(max_size=10), max_size=3), st.integers(),
))
def test_fuzzed_inputs_raise_only_the_documented_error(text):
    for parse in CRITIQUE_PARSERS.values():
        _call(parse, text)  # anything but CritiqueParseError propagates and fails the test
    for read in TEXT_READERS.values():
        _call(read, text, allowed=())


def test_critiques_past_the_cap_are_refused_with_their_length():
    with pytest.raises(CritiqueParseError, match="over the"):
        Critique.parse("Step 1: 1+1=2 correct\n" * (MAX_CRITIQUE_CHARS // 10) + "Verdict: correct")


@pytest.mark.parametrize("text", [
    "Step 1: 1+1=2 correct\nVerdict: wrong, first error at step 0",
    "Step 1: 1+1=2 correct\nVerdict: wrong, first error at step 4",   # past the solution's 3 lines
    "Step 0: 1+1=2 wrong\nVerdict: wrong, first error at step 0",
    "Step 4: 1+1=2 wrong\nVerdict: wrong, first error at step 4",
])
def test_step_numbers_outside_the_solution_are_a_parse_error(text):
    with pytest.raises(CritiqueParseError):
        Critique.parse(text, num_steps=3)


def test_the_paper_format_fallback_respects_the_solutions_length():
    paper = ("Step sentence: a\nCorrectness of the step: Correct\nExplanation: fine\n\n"
             "Correctness of the final answer: Wrong\nExplanation: no")
    assert len(read_critique(paper, 2).steps) == 2
    with pytest.raises(CritiqueParseError):
        read_critique(paper, 5)


MALFORMED_ROWS = [
    None, "text", 3, [], {}, {"conversations": None}, {"conversations": "hi"}, {"conversations": [1, 2]},
    {"conversations": [{"from": "human"}]}, {"conversations": [{"from": "human", "value": None}]},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": 5}]},
    {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "not a critique"}]},
    {"conversations": [{"from": "gpt", "value": "Correctness of the final answer: Correct"}]},
    {"instruction": None, "output": "x"}, {"instruction": "x", "output": None}, {"instruction": "x", "output": 1},
    {"instruction": "x", "output": "x", "input": 7}, {"instruction": "x", "output": ""},
    {"instruction": "x", "output": "Step sentence: a"}, {"output": "x"}, {"instruction": "x"}, {1: 2},
]


@pytest.mark.parametrize("i", range(len(MALFORMED_ROWS)))
def test_malformed_rows_raise_the_row_error_naming_the_row(i):
    with pytest.raises(RowFormatError, match=f"row {i}"):
        from_row(MALFORMED_ROWS[i], index=i)
    with pytest.raises(RowFormatError, match=f"row {i}"):
        from_refinement_row(MALFORMED_ROWS[i], index=i)


def test_every_released_refinement_row_parses_and_its_refinement_verifies(data_dir):
    rows = json.load(open(data_dir / "mathcritique" / "llama3-8b-gsm8k-refinement-samples.json"))
    gold = {}
    for split in ("train", "test"):
        for line in open(data_dir / "gsm8k" / f"{split}.jsonl"):
            row = json.loads(line)
            gold[row["question"].strip()] = row["answer"].rsplit("####", 1)[1].strip()
    assert len(rows) == 100
    for i, row in enumerate(rows):
        parsed = from_refinement_row(row, index=i)
        review = row["instruction"].split("Human:", 1)[1]
        verdicts = [line.split(":", 1)[1].strip().lower() == "correct" for line in review.splitlines()
                    if line.startswith("Correctness of the step:")]
        final = [line for line in review.splitlines() if line.startswith("Correctness of the final answer:")]
        # one judgement per step verdict, plus the final answer's (whose line the row may quote as a sentence too)
        assert len(parsed.critique.steps) == len(verdicts) + 1
        assert review.count("Step sentence:") in (len(verdicts), len(verdicts) + 1)
        assert [j.correct for j in parsed.critique.steps[:-1]] == verdicts
        assert parsed.critique.steps[-1].is_answer and len(final) == 1
        assert parsed.critique.steps[-1].correct == (final[0].split(":", 1)[1].strip().lower() == "correct")
        assert verify_response(parsed.refinement, gold[parsed.question]).correct, (i, parsed.refinement[-80:])


class _BadCritic(NullCritic):
    """Names a step the solution does not have."""

    name = "bad"

    def critique(self, problem, steps):
        return Critique((StepJudgement(len(steps) + 5, False, feedback="Step 9 is wrong."),))


def test_a_critique_naming_a_missing_step_is_recorded_and_cuts_nothing():
    p = SyntheticArithmetic(size=1, min_steps=3, max_steps=3, seed=1)[0]
    env = MathReasoningEnv([p], _BadCritic(), EnvConfig(action_unit="solution", max_refinements=2))
    env.reset(options={"index": 0})
    wrong = corrupt_solution(p, 2, "calculation", random.Random(0)).steps
    _, _, terminated, _, info = env.step("\n".join(wrong))
    attempt = info["record"].attempts[0]
    assert terminated and not info["refined"] and attempt.cut_at is None
    assert "first error at step 9 of a 4-step solution" in attempt.not_applied
    assert info["record"].steps == list(wrong)
    assert OracleCritic().critique(p, wrong).first_error_step == 2  # the solution really was wrong


def test_renumber_steps_labels_the_step_lines_in_order_and_leaves_the_rest():
    lines = ["Step 1: 2+3=5", "step 1 : 5*2=10", "We add 4.", "Step 4: 10+4=14", "Step 4: 14-1=13", "Answer: 13"]
    assert renumber_steps(lines) == ["Step 1: 2+3=5", "step 2 : 5*2=10", "We add 4.", "Step 3: 10+4=14",
                                     "Step 4: 14-1=13", "Answer: 13"]
    assert renumber_steps(["Step 9" + "9" * 5_000 + ": 1+1=2"]) == ["Step 1: 1+1=2"]
    assert renumber_steps([]) == [] and renumber_steps(["Steps: none"]) == ["Steps: none"]
