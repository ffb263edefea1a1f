import random

import pytest

from critics import CritiqueParseError, OracleCritic
from critics.paper_format import from_paper_text, from_row, to_alpaca, to_paper_text, to_sharegpt
from envs import SyntheticArithmetic, corrupt_solution


def _verdicts(critique):
    return [(j.index, j.correct, j.is_answer, j.feedback if not j.correct else "") for j in critique.steps]


@pytest.mark.parametrize("export", [to_sharegpt, to_alpaca])
def test_round_trip_through_the_paper_format(export):
    oracle, rng = OracleCritic(), random.Random(0)
    for problem in SyntheticArithmetic(size=30, min_steps=2, max_steps=6, seed=2):
        steps = corrupt_solution(problem, rng.randint(1, problem.difficulty), "operand", rng).steps \
            if rng.random() < 0.6 else problem.steps
        critique = oracle.critique(problem, steps)
        row = export(problem.question, steps, critique)
        back = from_row(row)
        assert back.steps == list(steps[:-1])
        assert _verdicts(back.critique) == _verdicts(critique)
        assert back.critique.first_error_step == critique.first_error_step
        assert problem.question in back.prompt


def test_reads_the_paper_layout_with_brackets_and_running_explanations():
    text = """Step 1:
Step sentence: Natalia sold 48/2 = 24 clips in May.
Correctness of the step: [Correct]
Explanation: 48 divided by 2 is 24.

Step 2:
Step sentence: She sold 48 + 24 = 71 clips altogether.
Correctness of the step: [Wrong]
Explanation: 48 + 24 is 72,
not 71.

Correctness of the final answer: [Wrong]
Explanation: It follows the wrong step 2."""
    parsed = from_paper_text(text)
    assert parsed.steps[1] == "She sold 48 + 24 = 71 clips altogether."
    c = parsed.critique
    assert c.first_error_step == 2 and c.feedback_for(2) == "48 + 24 is 72, not 71." and c.final_answer_correct is False


def test_paper_text_of_a_correct_solution():
    problem = SyntheticArithmetic(size=1, min_steps=2, max_steps=2)[0]
    text = to_paper_text(OracleCritic().critique(problem, problem.steps), problem.steps)
    assert text.count("Correctness of the step: Correct") == 2 and "Correctness of the final answer: Correct" in text


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("Correctness of the step: Correct", "without a 'Step sentence'"),
    ("Step sentence: a\nCorrectness of the step: Correct", "final answer"),
    ("Step sentence: a\nStep sentence: b\nCorrectness of the step: Wrong\nCorrectness of the final answer: Wrong",
     "2 step sentences but 1"),
    ("hello", "unrecognised line"),
])
def test_malformed_paper_critiques(text, message):
    with pytest.raises(CritiqueParseError, match=message):
        from_paper_text(text)


def test_rows_that_are_neither_format():
    with pytest.raises(CritiqueParseError, match="not a ShareGPT or Alpaca row"):
        from_row({"text": "x"})
    with pytest.raises(CritiqueParseError, match="human turn and a gpt turn"):
        from_row({"conversations": [{"from": "human", "value": "q"}]})
