import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from rewards import answers_equal, extract_answer, parse_number, reward, verify_response


@pytest.mark.parametrize("text, expected, method", [
    ("Step 1: 4*7=28\nAnswer: 36", "36", "answer_line"),
    ("so the result is \\boxed{\\frac{1}{\\sqrt{2}}}.", "\\frac{1}{\\sqrt{2}}", "boxed"),
    ("nested \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)} end", "\\left( 3, \\frac{\\pi}{2} \\right)", "boxed"),
    ("She makes 9 * 2 = $<<9*2=18>>18\n#### 18", "18", "gsm8k"),
    ("#### 1,234", "1234", "gsm8k"),
    ("The answer is 36.", "36", "answer_is"),
    ("So the final answer is $42$.", "42", "answer_is"),
    ("Answer: $1,234.50", "1234.50", "answer_line"),
    ("Answer: 36 apples", "36", "answer_line"),
    ("Final answer: -7", "-7", "answer_line"),
    ("I think 5 then 7", "7", "last_number"),
])
def test_extract_answer_formats(text, expected, method):
    found = extract_answer(text)
    assert found is not None and found.text == expected and found.method == method


@pytest.mark.parametrize("text", ["", "   ", "no numbers here", "\\boxed{"])
def test_extract_answer_nothing(text):
    assert extract_answer(text, allow_last_number=False) is None


def test_last_number_fallback_can_be_disabled():
    assert extract_answer("I think 5 then 7", allow_last_number=False) is None


@pytest.mark.parametrize("a, b, equal", [
    ("0.5", "\\frac{1}{2}", True),
    ("3.0", "3", True),
    ("1,000", "1000", True),
    ("$18", "18", True),
    ("50%", "0.5", True),
    ("\\frac{14}{3}", "\\dfrac{14}{3}", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\text{(C)}", "(C)", True),
    ("4", "3", False),
    ("\\frac{1}{3}", "0.33", False),
    ("x^2+1", "x^2+2", False),
    (None, "3", False),
    ("", "3", False),
])
def test_answers_equal(a, b, equal):
    assert answers_equal(a, b) is equal


def test_parse_number():
    assert parse_number("1,234") == 1234
    assert parse_number("-3.50") == Fraction(-7, 2)
    assert parse_number("\\$32,\\!348") == 32348
    assert parse_number("3/4") == Fraction(3, 4)
    assert parse_number("12%") == Fraction(3, 25)
    assert parse_number("6.72e-05") == Fraction(672, 10**7)
    assert parse_number("x+1") is None
    assert parse_number("1/0") is None


def test_reward_and_reasons():
    result = verify_response("Step 1: 2+2=4\nAnswer: 4", "4")
    assert result.correct and result.extracted == "4" and result.reward == 1.0 and result.method == "answer_line"
    wrong = verify_response("Answer: 5", "4")
    assert not wrong.correct and wrong.reward == 0.0 and "not equivalent" in wrong.reason
    missing = verify_response("", "4")
    assert missing.extracted is None and "no answer" in missing.reason
    assert reward("The answer is 4.", "4") == 1.0


def _alternate(gold: str) -> str:
    """The same answer written another way."""
    value = parse_number(gold)
    if value is None:
        return f"\\boxed{{{gold}}}"
    if value.denominator == 1:
        return f"{value.numerator}.0"
    decimal = str(float(value))
    if Fraction(decimal) == value and "e" not in decimal:
        return decimal
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


def _perturb(gold: str) -> str:
    m = re.search(r"\d+", gold)
    if m:
        return gold[: m.start()] + str(int(m.group()) + 1) + gold[m.end():]
    if "text" in gold:
        return gold.replace("}", "Z}", 1)
    return gold + "+1"


def _gold_answers(data_dir):
    golds = [json.loads(line)["answer"] for line in open(data_dir / "math500" / "test.jsonl")]
    golds += [json.loads(line)["answer"].split("####")[-1].strip()
              for line in open(data_dir / "gsm8k" / "test.jsonl")]
    return golds


def test_every_gold_answer_verifies_against_itself_and_not_a_perturbation(data_dir):
    golds = _gold_answers(data_dir)
    assert len(golds) == 1819
    failures = []
    for gold in golds:
        if not answers_equal(gold, gold) or not answers_equal(_alternate(gold), gold) \
                or answers_equal(_perturb(gold), gold):
            failures.append(gold)
    assert not failures, failures[:10]


def test_extraction_runs_on_every_reference_solution(data_dir):
    for line in open(data_dir / "math500" / "test.jsonl"):
        row = json.loads(line)
        result = verify_response(row["solution"], row["answer"])
        assert result.extracted is not None
    right = 0
    rows = [json.loads(line) for line in open(data_dir / "gsm8k" / "test.jsonl")]
    for row in rows:
        right += verify_response(row["answer"], row["answer"].split("####")[-1].strip()).correct
    assert right == len(rows)


def _math_verify_cases():
    return [json.loads(line) for line in open(Path(__file__).parent / "data" / "math_verify" / "cases.jsonl")]


def test_verify_response_agrees_with_math_verifys_own_cases_at_least_as_often_as_its_default():
    from math_verify import parse, verify

    cases = _math_verify_cases()
    assert len(cases) == 260
    ours = theirs = 0
    for c in cases:
        ours += verify_response(c["pred"], c["gold"]).correct == bool(c["expected"])
        theirs += bool(verify(parse(c["gold"]), parse(c["pred"]))) == bool(c["expected"])
    assert ours >= theirs >= 250, (ours, theirs)


@pytest.mark.parametrize("pred, gold, correct", [
    ("$\\frac{10}{9}$", "10/9", True),                 # a LaTeX fraction is not its last number
    ("$\\frac{1+\\sqrt{5}}{2}$", "2", False),
    ("$[0,1)$", "$[0,1)$", True),
    (".4", "0.4", True),
    ("1 000", "1000", True),
    ("28 percent", "$28\\%$", True),
    ("The answer is $x \\geq 5$.", "$x >= 5$", True),
    ("$\\text{E}$", "E", True),
    ("AZYUK2A", "2", False),                           # a digit inside a word is not a number
    ("First \\boxed{255}. Final Answer: The final answer is $10,455$.", "10455", True),
    ("#### 18", "18", True),
    ("So she has 18 eggs.\nA: 18", "18", True),
    ("3 + 15 = 18 eggs.\nThe answer is 18.", "18", True),
    ("3 + 15 = 18 eggs.\nThe answer is 18.\nChecked 2 times.", "18", True),  # the marker wins
    ("Step 1: 29+22=51\nStep 2: 51*3=153", "153", True),  # a step solution cut off before its answer line
    ("Answer: (C)", "\\text{(C)}", True),
])
def test_verify_response_on_real_text(pred, gold, correct):
    assert verify_response(pred, gold).correct is correct


def test_every_gsm8k_reference_verifies_whichever_way_it_states_its_answer(data_dir):
    rows = [json.loads(line) for split in ("train", "test") for line in open(data_dir / "gsm8k" / f"{split}.jsonl")]
    assert len(rows) == 8792
    wrong = []
    for row in rows:
        body, gold = row["answer"].rsplit("####", 1)
        gold = gold.strip()
        for text in (row["answer"], f"{body}A: {gold}", f"{body}The answer is {gold}.",
                     f"{body}A: {gold}\nChecked 2 times.", f"{body}The answer is {gold}.\nI checked it 3 times."):
            if not verify_response(text, gold).correct:
                wrong.append(text[-60:])
    assert wrong == []


def test_gsm8k_answer_lines_end_a_step_by_step_episode(data_dir):
    """In step mode every line is an action: GSM8K's own answer lines must end the episode, right, for all 8,792
    reference solutions (a trailing remark after the answer is never reached)."""
    from critics import NullCritic
    from envs import EnvConfig, MathReasoningEnv, load_gsm8k

    outcomes = []
    for split in ("train", "test"):
        source = load_gsm8k(data_dir / "gsm8k" / f"{split}.jsonl", split=split)
        env = MathReasoningEnv(source, NullCritic(), EnvConfig(action_unit="step", max_turns=64))
        for i, problem in enumerate(source):
            assert problem.steps[-1] == f"Answer: {problem.answer}"
            for answer in (f"A: {problem.answer}", f"The answer is {problem.answer}."):
                env.reset(options={"index": i})
                for line in [*problem.steps[:-1], answer, "Checked 2 times."]:
                    _, reward, terminated, truncated, _ = env.step(line)
                    if terminated or truncated:
                        break
                outcomes.append(terminated and reward == 1.0)
    assert len(outcomes) == 2 * 8792 and all(outcomes)
