import pytest
from hypothesis import given
from hypothesis import strategies as st

from critics import Critique, CritiqueParseError, StepJudgement

EXAMPLE = """Step 1: 4*7=28 correct
Step 2: 23+28=51 wrong | Step 2 is wrong: 23+28 is 51, not 52; the rest builds on it.
Step 3: 52-15=37 wrong | Step 3 builds on the error in step 2.
Final answer: wrong | The final answer 37 is wrong because of the error in step 2.
Verdict: wrong, first error at step 2
Hint: Recompute step 2: 23+28=51."""


def test_parse_and_render_round_trip():
    c = Critique.parse(EXAMPLE, num_steps=4)
    assert c.first_error_step == 2 and not c.is_correct and c.final_answer_correct is False
    assert c.steps[0] == StepJudgement(1, True, "4*7=28", "")
    assert c.steps[3].is_answer and c.steps[3].index == 4
    assert c.hint == "Recompute step 2: 23+28=51."
    assert c.render() == EXAMPLE
    assert Critique.parse(c.render(), num_steps=4) == c


def test_correct_and_partial_critiques():
    ok = Critique.parse("Step 1: 2+2=4 correct\nFinal answer: correct\nVerdict: correct")
    assert ok.is_correct and ok.final_answer_correct is True and ok.first_error_step is None
    partial = Critique.parse("Step 1: correct\nStep 2: 3*3=9 correct\nVerdict: correct")
    assert partial.final_answer_correct is None


def test_verdict_names_an_error_that_step_lines_omit():
    c = Critique.parse("Step 1: correct\nVerdict: wrong, first error at step 3", num_steps=4)
    assert c.first_error_step == 3


def test_dict_round_trip():
    c = Critique.parse(EXAMPLE, num_steps=4)
    assert Critique.from_dict(c.to_dict()) == c
    assert c.to_dict()["first_error_step"] == 2


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("Step 1: correct", "no 'Verdict:' line"),
    ("Step 1: correct\nblah\nVerdict: correct", "unrecognised critique line 'blah'"),
    ("Step 9: correct\nVerdict: correct", "out of range"),
    ("Step 1: correct\nStep 1: wrong\nVerdict: wrong", "judged twice"),
    ("Step 1: wrong\nVerdict: correct", "contradicts"),
    ("Step 1: correct\nVerdict: wrong", "contradicts"),
])
def test_malformed_critiques_raise_a_named_error(text, message):
    with pytest.raises(CritiqueParseError, match=message):
        Critique.parse(text, num_steps=3)


@given(st.text(max_size=300))
def test_parse_never_raises_anything_but_parse_errors(text):
    try:
        Critique.parse(text, num_steps=5)
    except CritiqueParseError:
        pass
