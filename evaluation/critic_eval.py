"""How good is a critic? Verdict and first-error location on labelled solutions, by kind of mistake.

Three sets of solutions to held-out problems, labelled by the verifier (is the final answer wrong?) and the
oracle critic (where is the first wrong step?):

* ``natural``: the actor's samples at a temperature: the mistakes a critic meets in practice;
* ``injected``: one programmatic mistake per reference solution, mixed half and half with the references;
* ``greedy``: the actor's greedy solutions. Its greedy mistakes are systematic, so a step-wise self-check,
  which asks the actor again, cannot see them; catches there are reported on their own.

The scores: balanced accuracy of the wrong/right verdict (the mean of the recall on wrong and on right
solutions, so a critic that always says "correct" scores 0.5), F1 on the wrong class, and the share of the
wrong solutions the critic flags whose first wrong step it names exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from agents.actor import Actor
from autocritique.flawed import sample_responses, text_errors, typed_errors
from core.critique import Critique
from core.problem import Problem
from critics.oracle import OracleCritic
from envs.math_env import EnvConfig
from rewards.verifier import verify_response
from storage import read_jsonl

__all__ = ["LabeledSolution", "StepLabeledSolution", "collect_eval_solutions", "label", "read_processbench",
           "score_critic", "score_processbench"]


@dataclass(frozen=True)
class LabeledSolution:
    problem: Problem
    steps: tuple[str, ...]
    wrong: bool                # the verifier rejects the final answer
    first_error: int | None    # the oracle's first wrong step (None when it finds none)
    subset: str


def label(problem: Problem, steps: Sequence[str], subset: str, oracle: OracleCritic | None = None) -> LabeledSolution:
    oracle = oracle or OracleCritic()
    wrong = not verify_response("\n".join(steps), problem.answer).correct
    first = oracle.critique(problem, steps).first_error_step
    if wrong and first is None:
        first = len(steps)  # nothing wrong before the answer: the answer line is the error
    return LabeledSolution(problem, tuple(steps), wrong, first if wrong else None, subset)


def collect_eval_solutions(problems: Sequence[Problem], actor: Any, temperature: float = 1.0, seed: int = 0,
                           kinds: Sequence[str] | None = None, samples_per_problem: int = 2,
                           env: EnvConfig | None = None) -> dict[str, list[LabeledSolution]]:
    """The three labelled sets for ``problems`` (held-out ones): ``samples_per_problem`` natural samples per
    problem, one greedy solution, one injected-or-reference solution."""

    oracle = OracleCritic()
    sets: dict[str, list[LabeledSolution]] = {}
    sampler = Actor(actor.backend, actor.template, replace(actor.sampling, temperature=temperature, seed=seed))
    sets["natural"] = [label(r.problem, r.steps, "natural", oracle)
                       for r in sample_responses(problems, sampler, samples_per_problem, seed=seed, env=env)]
    greedy = Actor(actor.backend, actor.template, replace(actor.sampling, temperature=0.0))
    sets["greedy"] = [label(r.problem, r.steps, "greedy", oracle) for r in sample_responses(problems, greedy, 1, seed=seed,
                                                                                      env=env)]
    rng = random.Random(seed)
    half = len(problems) // 2
    if all("program" in p.metadata for p in problems):
        injected = typed_errors(problems[:half], rng, kinds=kinds) if kinds else typed_errors(problems[:half], rng)
    else:  # real problems: calculation slips written into the references that have checkable steps
        injected = text_errors([p for p in problems[:half] if p.steps], rng)
    sets["injected"] = ([label(r.problem, r.steps, "injected", oracle) for r in injected]
                        + [label(p, p.steps, "injected", oracle) for p in problems[half:] if p.steps])
    return sets


@dataclass(frozen=True)
class StepLabeledSolution:
    """A ProcessBench row: a solution's steps and the index of its first wrong step (-1: none), 0-based."""

    id: str
    problem: str
    steps: tuple[str, ...]
    label: int


def read_processbench(path: str) -> list[StepLabeledSolution]:
    """ProcessBench's JSONL (``problem``, ``steps`` list, ``label``; ``id`` optional); a bad row is an error
    naming its line."""
    rows = []
    for number, row in read_jsonl(path):
        try:
            steps = row["steps"]
            if not isinstance(steps, list) or not steps or not all(isinstance(x, str) for x in steps):
                raise ValueError("'steps' must be a non-empty list of strings")
            first = int(row["label"])
            if not -1 <= first < len(steps):
                raise ValueError(f"'label' {first} is not -1 or a step index below {len(steps)}")
            rows.append(StepLabeledSolution(str(row.get("id", number)), str(row["problem"]), tuple(steps), first))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{number}: not a ProcessBench row ({type(err).__name__}: {err})") from err
    return rows


def score_processbench(critiques: Sequence[Critique], rows: Sequence[StepLabeledSolution]) -> dict[str, Any]:
    """ProcessBench's scores: accuracy on erroneous solutions (the first wrong step named exactly), on correct
    ones (nothing flagged), and their harmonic mean (F1)."""
    if len(critiques) != len(rows):
        raise ValueError(f"{len(critiques)} critiques for {len(rows)} rows")
    predicted = [-1 if c.first_error_step is None else min(c.first_error_step, len(r.steps)) - 1
                 for c, r in zip(critiques, rows)]
    erroneous = [p == r.label for p, r in zip(predicted, rows) if r.label != -1]
    correct = [p == -1 for p, r in zip(predicted, rows) if r.label == -1]
    acc_err = sum(erroneous) / len(erroneous) if erroneous else None
    acc_ok = sum(correct) / len(correct) if correct else None
    f1 = (2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err is not None and acc_ok is not None and acc_err + acc_ok
          else 0.0)
    return {"n": len(rows), "erroneous": len(erroneous), "correct": len(correct), "accuracy_erroneous": _r(acc_err),
            "accuracy_correct": _r(acc_ok), "f1": _r(f1), "abstained": sum(c.abstained for c in critiques)}


def score_critic(critiques: Sequence[Critique], solutions: Sequence[LabeledSolution]) -> dict[str, Any]:
    if len(critiques) != len(solutions):
        raise ValueError(f"{len(critiques)} critiques for {len(solutions)} solutions")
    wrong = [(c, s) for c, s in zip(critiques, solutions) if s.wrong]
    right = [(c, s) for c, s in zip(critiques, solutions) if not s.wrong]
    caught = [(c, s) for c, s in wrong if not c.is_correct]
    false_alarms = sum(not c.is_correct for c, _ in right)
    located = sum(c.first_error_step == s.first_error for c, s in caught)
    recall_wrong = len(caught) / len(wrong) if wrong else None
    recall_right = (len(right) - false_alarms) / len(right) if right else None
    flagged = len(caught) + false_alarms
    precision = len(caught) / flagged if flagged else 0.0
    f1 = (2 * precision * recall_wrong / (precision + recall_wrong)
          if recall_wrong and precision + recall_wrong > 0 else 0.0)
    parts = [r for r in (recall_wrong, recall_right) if r is not None]
    return {
        "n": len(solutions),
        "wrong": len(wrong),
        "caught": len(caught),
        "false_alarms": false_alarms,
        "recall_wrong": _r(recall_wrong),
        "recall_right": _r(recall_right),
        "balanced_accuracy": _r(sum(parts) / len(parts)) if parts else None,
        "f1_wrong": _r(f1),
        "located": located,
        "location_accuracy": _r(located / len(caught)) if caught else None,
        "abstained": sum(c.abstained for c in critiques),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
