import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import check_step, find_computations, format_number


@pytest.mark.parametrize("step, expression, stated, ok", [
    ("Step 1: 4*7=28", "4*7", 28, True),
    ("Step 2: 4 × 7 = 27", "4*7", 27, False),
    ("She has 10 x 2 = 20 cookies", "10*2", 20, True),
    ("She makes 9 * 2 = $<<9*2=18>>18 every day", "9*2", 18, True),
    ("It costs $10 x 2 = $20", "10*2", 20, True),
    ("Step 3: 51−15=36", "51-15", 36, True),
    ("10 ÷ 4 = 2.5 hours", "10/4", Fraction(5, 2), True),
    ("10/3=3.33 each", "10/3", Fraction(333, 100), True),
    ("The total is 1,200+300=1,500.", "1200+300", 1500, True),
    ("8 people eat 1 1/2 rolls each, 8 x 1 1/2 = 12 rolls", "8*11/2", 12, True),
    ("100% - 40% = 60% of the students", "100%-40%", Fraction(3, 5), True),
    ("Step 2: 5-8=-3", "5-8", -3, True),
])
def test_single_computation(step, expression, stated, ok):
    comps = find_computations(step)
    assert len(comps) == 1, comps
    c = comps[0]
    assert c.expression == expression and c.stated == stated and c.ok is ok


def test_wrong_computation_says_what_is_right():
    check = check_step("Step 3: 4*7=27")
    assert not check.ok and len(check.errors) == 1
    assert check.errors[0].value == 28
    assert check.errors[0].describe_error() == "4*7 is 28, not 27"


def test_calculator_notes_take_precedence_over_inline_text():
    # GSM8K writes each computation twice; it must be counted once
    comps = find_computations("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.")
    assert [(c.expression, c.stated, c.source) for c in comps] == [("16-3-4", 9, "calculator")]
    wrong = check_step("so 3 * 4 = <<3*4=13>>13")
    assert not wrong.ok and wrong.errors[0].value == 12


@pytest.mark.parametrize("step", [
    "He works M + 4 + 2 = 8 hours a day.",          # algebra with a variable
    "The retail price is X + X*80% = $36.",
    "100/5 = 5A/5 or 20 = A.",
    "Answer: 36",
    "There are no numbers here.",
    "x = 5",
    "",
])
def test_no_false_computations(step):
    assert check_step(step).ok


def test_several_computations_in_one_step():
    comps = find_computations("First 2+3=5, then 5*4=21.")
    assert [(c.expression, c.ok) for c in comps] == [("2+3", True), ("5*4", False)]


def test_binary_view():
    (c,) = find_computations("Step 1: 12/4=3")
    assert c.binary == (12, "/", 4)
    (c,) = find_computations("Step 1: 1+2+3=6")
    assert c.binary is None


def test_format_number():
    assert format_number(Fraction(28)) == "28"
    assert format_number(Fraction(5, 2)) == "2.5"
    assert format_number(Fraction(-1, 4)) == "-0.25"
    assert format_number(Fraction(7, 3)) == "7/3"


def test_every_gsm8k_solution_is_checked_and_almost_all_computations_hold(data_dir):
    total = wrong = 0
    for split in ("train", "test"):
        for line in open(data_dir / "gsm8k" / f"{split}.jsonl"):
            for step in json.loads(line)["answer"].split("\n")[:-1]:
                check = check_step(step)
                total += len(check.computations)
                wrong += len(check.errors)
    assert total > 25_000  # the checker finds the computations, not just a few
    # GSM8K's own text has a few genuine slips and ambiguous notations ("16,0000/10", "3/1=1")
    assert wrong / total < 0.005, (wrong, total)


def test_runs_on_every_math500_solution(data_dir):
    for line in open(data_dir / "math500" / "test.jsonl"):
        for step in json.loads(line)["solution"].split("\n"):
            check_step(step)  # must not raise on LaTeX, asy code, tables


def test_huge_powers_are_not_evaluated():
    assert check_step("Step 1: 9^9^9=1").computations == ()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/^()=.,% x×÷$<>abc \n", max_size=80))
def test_check_step_never_raises(text):
    check_step(text)


def test_a_calculators_float_noise_is_not_an_error_and_errors_read_as_decimals():
    from fractions import Fraction

    from rewards.steps import format_number

    [note] = find_computations("<<11/18*162=99.00000000000001>>")
    assert note.ok
    [wrong] = find_computations("<<11/18*162=99.5>>")
    assert not wrong.ok and wrong.describe_error() == "11/18*162 is 99, not 99.5"
    assert format_number(Fraction(9900000000000001, 100000000000000)) == "99.00000000000001"
    assert format_number(Fraction(-7, 4)) == "-1.75" and format_number(Fraction(1, 3)) == "1/3"


def test_a_variable_is_not_a_times_sign_and_a_list_is_not_a_mixed_number():
    assert find_computations("3x + 20 + 10 = 45") == []           # algebra, not 3 * (+20) + 10
    assert [c.expression for c in find_computations("10 x 2 = 20")] == ["10*2"]
    assert [c.expression for c in find_computations("4x5=20")] == ["4*5"]
    assert all(c.ok for c in find_computations("$10 x 2 = $20"))
    [mixed] = find_computations("1 1/2 + 1 = 2.5")
    assert mixed.ok                                                # "1 1/2" is one and a half
    assert find_computations("He bought 12 1 1/2 pound bags = 18") == []  # not "12" then "1 1/2"
