import json
import random
import re

import pytest

from core.problem import Problem
from critics import OracleCritic
from envs import ERROR_KINDS, DatasetFormatError, SyntheticArithmetic, corrupt_solution, load_gsm8k, load_math
from envs.synthetic import NAMES
from rewards import answers_equal, check_step, is_answer_line


def test_synthetic_is_seeded_and_reproducible():
    a = SyntheticArithmetic(size=50, seed=3)
    b = SyntheticArithmetic(size=50, seed=3)
    c = SyntheticArithmetic(size=50, seed=4)
    assert [p.question for p in a] == [p.question for p in b]
    assert [p.question for p in a] != [p.question for p in c]
    assert a.sample(7) == b.sample(random.Random(7))


@pytest.mark.parametrize("steps", range(1, 9))
def test_difficulty_is_the_number_of_steps(steps):
    source = SyntheticArithmetic(size=20, min_steps=steps, max_steps=steps, seed=1)
    for p in source:
        assert p.difficulty == steps
        assert len(p.steps) == steps + 1 and is_answer_line(p.steps[-1])


def test_reference_solutions_are_right_and_in_range():
    source = SyntheticArithmetic(size=400, min_steps=1, max_steps=8, max_operand=20, max_value=199, seed=2)
    assert source.difficulties() == list(range(1, 9))
    for p in source:
        for step in p.steps[:-1]:
            check = check_step(step)
            assert len(check.computations) == 1 and check.ok, step
            c = check.computations[0]
            assert 0 <= c.stated <= 199 and c.stated.denominator == 1
        assert answers_equal(p.steps[-1].removeprefix("Answer:").strip(), p.answer)
        assert p.steps[-2].endswith(f"={p.answer}")


def test_number_range_knob():
    small = SyntheticArithmetic(size=200, max_operand=5, max_value=30, seed=0)
    for p in small:
        for step in p.steps[:-1]:
            assert check_step(step).computations[0].stated <= 30


def test_train_and_test_splits_are_disjoint_whatever_the_seeds():
    train = {p.question for seed in (0, 1) for p in SyntheticArithmetic(size=1500, split="train", seed=seed)}
    test = {p.question for seed in (0, 7) for p in SyntheticArithmetic(size=1500, split="test", seed=seed)}
    assert len(test) > 2000 and not train & test


def test_distractors_lengthen_the_question_and_change_nothing_else():
    plain = SyntheticArithmetic(size=300, max_steps=4, split="test", seed=5)
    noisy = SyntheticArithmetic(size=300, max_steps=4, split="test", seed=5, distractors=4)
    sentences = lambda text: re.split(r"(?<=[.?]) ", text)  # noqa: E731
    counts = []
    for p, q in zip(plain, noisy):  # the same story, split, solution and answer
        assert (q.steps, q.answer, q.difficulty, q.metadata["program"]) == (p.steps, p.answer, p.difficulty,
                                                                            p.metadata["program"])
        added = [s for s in sentences(q.question) if s not in sentences(p.question)]
        assert [s for s in sentences(q.question) if s not in added] == sentences(p.question)  # order kept
        assert len(added) == q.metadata["distractors"] <= 4
        counts.append(len(added))
        pronoun = "she" if re.search(r"\bShe\b", p.question) else "he" if re.search(r"\bHe\b", p.question) else None
        for sentence in added:  # about someone else, whom the story's pronoun cannot mean
            who = sentence.split()[0]
            assert who not in p.question and dict(NAMES)[who] != pronoun
    assert set(counts) == {0, 1, 2, 3, 4}
    assert sum(len(q.question) for q in noisy) > 1.3 * sum(len(p.question) for p in plain)
    oracle = OracleCritic()  # the reference is still right, and a misread number still a mistake
    assert all(oracle.critique(q, q.steps).first_error_step is None for q in noisy[:60])
    wrong = corrupt_solution(noisy[10], 1, "operand", random.Random(0))
    assert oracle.critique(noisy[10], wrong.steps).first_error_step == 1
    from envs.registry import ProblemsConfig, build_source  # the config key every stage's problems go through

    assert build_source(ProblemsConfig(max_steps=4, seed=5, distractors=4), split="test", size=300) == noisy[:]


def test_bad_knobs_are_refused():
    with pytest.raises(ValueError, match="distractors"):
        SyntheticArithmetic(distractors=-1)
    with pytest.raises(ValueError, match="min_steps"):
        SyntheticArithmetic(min_steps=0)
    with pytest.raises(ValueError, match="split"):
        SyntheticArithmetic(split="dev")
    with pytest.raises(IndexError):
        SyntheticArithmetic(size=3)[3]


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_corruption_makes_exactly_the_chosen_step_wrong(kind):
    source = SyntheticArithmetic(size=200, min_steps=2, max_steps=6, seed=5)
    rng = random.Random(0)
    for p in source:
        step = rng.randint(1, p.difficulty)
        bad = corrupt_solution(p, step, kind, rng)
        assert bad.steps[: step - 1] == p.steps[: step - 1]
        assert bad.steps[step - 1] != p.steps[step - 1]
        assert not answers_equal(bad.answer, p.answer) or bad.steps[-2] != p.steps[-2]


def test_problem_round_trips_through_dict():
    p = SyntheticArithmetic(size=1)[0]
    assert Problem.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_gsm8k_loader(data_dir):
    test = load_gsm8k(split="test")
    assert len(test) == 1319
    p = test[0]
    assert p.answer == "18" and p.source == "gsm8k" and p.steps[-1] == "Answer: 18"
    assert p.difficulty >= 1 and "<<" in p.steps[0]
    assert len(load_gsm8k(split="train", limit=10)) == 10


def test_math_loader(data_dir):
    math = load_math()
    assert len(math) == 500
    p = math[0]
    assert p.answer == "\\left( 3, \\frac{\\pi}{2} \\right)" and p.difficulty == 2
    assert p.metadata["subject"] == "Precalculus"


def test_malformed_rows_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "x\\n#### 3"}\n{not json}\n')
    with pytest.raises(DatasetFormatError, match=r"bad\.jsonl:2: not valid JSON"):
        load_gsm8k(path=str(bad))
    bad.write_text('{"question": "q", "answer": "x\\n#### 3"}\n\n{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(DatasetFormatError, match=r"bad\.jsonl:3: .*####"):
        load_gsm8k(path=str(bad))
    bad.write_text('{"problem": "p"}\n')
    with pytest.raises(DatasetFormatError, match=r"bad\.jsonl:1: missing .*answer"):
        load_math(path=str(bad))
    bad.write_text('[1, 2]\n')
    with pytest.raises(DatasetFormatError, match=r"bad\.jsonl:1: expected a JSON object"):
        load_math(path=str(bad))


def test_missing_file_without_hub_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        load_gsm8k(path=str(tmp_path / "nope.jsonl"), hub_id=None)
