import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents import Actor, PromptTemplate, SamplingParams
from agents.backends import Completion
from autocritique import (
    AutoCritiqueConfig,
    FlawedResponse,
    LMAnnotator,
    OracleAnnotator,
    build_critique_dataset,
    decide,
    read_critique,
    read_dataset,
    refinement_filter,
    training_form,
    typed_errors,
    write_dataset,
)
from autocritique.annotate import Annotation
from autocritique.flawed import text_errors
from critics import Critique, CritiqueParseError, OracleCritic
from critics.paper_format import to_paper_text
from envs import Problem, SyntheticArithmetic, corrupt_solution, load_gsm8k
from rewards.answer import split_solution
from trainers.critic_sft import rows_to_examples

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = PromptTemplate(number_format="reversed")
PROBLEMS = SyntheticArithmetic(size=40, min_steps=2, max_steps=6, split="train", seed=11)[:]


class EchoBackend:
    """Answers every prompt with a fixed text (or a function of the prompt)."""

    name = "echo"
    tokenizer = None

    def __init__(self, reply):
        self.reply = reply
        self.prompts = []

    def generate(self, prompts, sampling):
        self.prompts += list(prompts)
        out = []
        for p in prompts:
            text = self.reply(p) if callable(self.reply) else self.reply
            out.append([Completion(text, [], []) for _ in range(sampling.n)])
        return out


def test_every_typed_error_kind_makes_a_wrong_solution_the_oracle_locates():
    rng = random.Random(0)
    for kind in ("calculation", "operand", "operation", "skipped"):
        responses = typed_errors(PROBLEMS, rng, kinds=[kind])
        assert {r.source for r in responses} == {"typed"} and len(responses) == len(PROBLEMS)
        located = 0
        for r in responses:
            critique = OracleCritic().critique(r.problem, r.steps)
            assert not critique.is_correct, (kind, r.steps)
            located += critique.first_error_step == r.error_step
        # a skipped step may first show a line or two later (the line standing in its place can be right)
        assert located >= (0.6 if kind == "skipped" else 0.95) * len(responses), kind


def test_skipped_step_drops_one_line():
    p = PROBLEMS[3]
    bad = corrupt_solution(p, 1, "skipped", random.Random(1))
    assert len(bad.steps) == len(p.steps) - 1 or bad.kind == "calculation"


def test_text_errors_on_gsm8k_are_located_at_the_edited_step(data_dir):
    problems = list(load_gsm8k(split="train", limit=120))
    responses = text_errors(problems, random.Random(0))
    assert len(responses) > 100
    oracle = OracleCritic()
    assert all(oracle.critique(r.problem, r.steps).first_error_step == r.error_step for r in responses)
    assert all(r.steps != r.problem.steps for r in responses)


def test_training_form_stops_at_the_first_error():
    p = PROBLEMS[5]
    bad = corrupt_solution(p, 2, "calculation", random.Random(0))
    full = OracleCritic().critique(p, bad.steps)
    short = training_form(full)
    assert [j.index for j in short.steps] == [1, 2] and short.first_error_step == 2
    assert short.steps[1].feedback and not short.steps[0].feedback and short.hint
    assert Critique.parse(short.render(), num_steps=len(bad.steps)) == short
    right = training_form(OracleCritic().critique(p, p.steps))
    assert right.is_correct and right.final_answer_correct and len(right.steps) == len(p.steps)


def test_oracle_annotator_drops_what_has_no_reference():
    p = PROBLEMS[0]
    no_ref = FlawedResponse(Problem(id="x", question="q", answer="1"), ("Answer: 2",), "sampled")
    out = OracleAnnotator().annotate([FlawedResponse(p, p.steps, "reference"), no_ref])
    assert out[0].critique.is_correct and out[1].critique is None and out[1].dropped == "no reference solution"


def test_lm_annotator_reads_both_formats_and_drops_garbage():
    p = PROBLEMS[1]
    bad = corrupt_solution(p, 1, "calculation", random.Random(2))
    oracle = OracleCritic().critique(p, bad.steps)
    replies = {
        "project": "Sure, here is my review:\n" + training_form(oracle).render(),
        "paper": to_paper_text(oracle, bad.steps),
        "garbage": "I think it is fine?!",
        "half": "Step 1: 3+4=7 correct\nStep 2: oops",
    }
    for kind, reply in replies.items():
        annotator = LMAnnotator(EchoBackend(reply))
        [annotation] = annotator.annotate([FlawedResponse(p, bad.steps, "typed", 1, "calculation")])
        if kind in ("project", "paper"):
            assert annotation.critique is not None and annotation.critique.first_error_step == 1, kind
        else:
            assert annotation.critique is None and annotation.dropped == "unparsable annotator output"
            assert sum(annotator.parse_failures.values()) == 1
    backend = EchoBackend("x")  # the prompt names the gold answer and the injected location
    LMAnnotator(backend).annotate([FlawedResponse(p, bad.steps, "typed", 1, "calculation")])
    assert f"Gold answer: {p.answer}" in backend.prompts[0] and "at step 1" in backend.prompts[0]
    with pytest.raises(CritiqueParseError):
        read_critique("nothing", 3)


@pytest.mark.parametrize("says_correct, verifier, refinements, fixed, keep, reason", [
    (True, True, 0, 0, True, ""),
    (True, False, 0, 0, False, "says correct but the answer is wrong"),
    (False, False, 2, 2, True, ""),
    (False, False, 2, 1, True, ""),
    (False, False, 2, 0, False, "refinements with the critique do not reach the answer"),
    (False, False, 4, 1, False, "refinements with the critique do not reach the answer"),
    (False, True, 2, 2, True, ""),
    (False, False, 0, 0, True, ""),  # filter off
])
def test_filter_keep_drop_rule(says_correct, verifier, refinements, fixed, keep, reason):
    d = decide(says_correct, verifier, refinements, fixed, threshold=0.5)
    assert (d.keep, d.reason) == (keep, reason)


def _annotated(problem, steps):
    return Annotation(FlawedResponse(problem, tuple(steps), "typed"),
                      training_form(OracleCritic().critique(problem, steps)))


def test_refinement_filter_keeps_critiques_that_lead_to_the_answer():
    rng = random.Random(3)
    problems = PROBLEMS[:6]
    annotations = [_annotated(p, corrupt_solution(p, 1, "calculation", rng).steps) for p in problems]
    annotations.append(_annotated(problems[0], problems[0].steps))  # a "correct" critique: no refinement

    def solve_right(prompt):  # continues with the reference from the flagged step, in model text
        problem = next(p for p in problems if TEMPLATE.codec.encode(p.question) in prompt)
        return TEMPLATE.completion(problem.steps)

    actor = Actor(EchoBackend(solve_right), TEMPLATE, SamplingParams(max_new_tokens=64))
    decisions = refinement_filter(annotations, actor, samples=3, threshold=0.5)
    assert all(d.keep for d in decisions)
    assert [d.refinements for d in decisions] == [3] * 6 + [0] and decisions[0].fixed == 3
    assert len(actor.backend.prompts) == 6 and all("\nFeedback: " in p for p in actor.backend.prompts)

    stubborn = Actor(EchoBackend(TEMPLATE.completion(["Step 1: 1+1=2", "Answer: 2"])), TEMPLATE)
    decisions = refinement_filter(annotations, stubborn, samples=2, threshold=0.5)
    assert [d.keep for d in decisions] == [False] * 6 + [True]


def test_split_solution_stops_at_the_answer():
    assert split_solution("Step 1: 1+1=2\n\nAnswer: 2\nStep 9: junk") == ("Step 1: 1+1=2", "Answer: 2")


@pytest.fixture(scope="module")
def small_dataset():
    from agents.backends.hf import HFBackend

    actor = Actor(HFBackend(ROOT / "checkpoints" / "tiny-actor", threads=2), TEMPLATE,
                  SamplingParams(max_new_tokens=160, seed=0))
    config = AutoCritiqueConfig(sampled_problems=48, located_problems=16, typed_problems=16, reference_problems=8)
    problems = SyntheticArithmetic(size=config.total_problems, split="train", seed=5)[:]
    return build_critique_dataset(problems, actor, config), (problems, actor, config)


def test_pipeline_end_to_end_on_the_shipped_actor(small_dataset, tmp_path):
    (rows, stats), (problems, actor, config) = small_dataset
    assert stats["responses"] == {"sampled": 48, "located": 16, "typed": 16, "reference": 8}
    assert sum(stats["kept"].values()) + sum(stats["dropped"].values()) == 88 == len(rows) + sum(stats["dropped"].values())
    assert stats["verdicts"]["correct"] >= 8 and stats["verdicts"]["wrong"] >= 10
    assert {r["source"] for r in rows} == {"sampled", "located", "typed", "reference"}
    for r in rows:
        critique = Critique.parse(r["critique"], num_steps=len(r["steps"]))
        assert critique.is_correct == r["is_correct"]
        if r["is_correct"]:
            assert r["answer_correct"]  # stage 3 keeps "correct" critiques only when the verifier agrees
        else:
            assert r["refinements_fixed"] >= 1
    path = write_dataset(tmp_path / "data", rows, stats)
    assert read_dataset(path) == rows
    from datasets import load_dataset

    loaded = load_dataset("json", data_files=str(path), split="train")
    assert len(loaded) == len(rows) and loaded[0]["critique"] == rows[0]["critique"]
    assert json.loads((tmp_path / "data" / "stats.json").read_text())["rows"] == len(rows)
    from autocritique.pipeline import write_paper_rows
    from critics.paper_format import from_row

    paper = [json.loads(x) for x in write_paper_rows(tmp_path / "data", rows).read_text().splitlines()]
    assert [from_row(p).critique.is_correct for p in paper] == [r["is_correct"] for r in rows]
    examples = rows_to_examples(rows, TEMPLATE)
    assert examples[0]["prompt"].endswith("Solution:\n" + TEMPLATE.solution_lines(rows[0]["steps"]) + "Critique:\n")
    # the same config and seed give the same dataset
    again, _ = build_critique_dataset(problems, actor, config)
    assert again == rows


def test_malformed_dataset_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"question": "q", "steps": ["Answer: 1"], "critique": "Final answer: correct\nVerdict: correct"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "critique": "looks fine"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: malformed critique row"):
        read_dataset(path)


def test_a_killed_dataset_write_leaves_no_half_written_file(tmp_path):
    out = tmp_path / "data"
    script = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from autocritique import write_dataset
def rows():
    for i in range(10**6):
        if i == 50:
            print("writing", flush=True)
            time.sleep(60)
        yield {{"i": i, "text": "x" * 100}}
write_dataset({str(out)!r}, rows(), {{}})
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "critiques.jsonl").exists() and not (out / "stats.json").exists()
