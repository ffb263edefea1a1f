import json
import random
import subprocess
import sys
from pathlib import Path

from core.critique import StepJudgement
from core.episode import Attempt, EpisodeRecord, Generation
from core.problem import replicate
from critics import Critique, OracleCritic
from envs import SyntheticArithmetic, corrupt_solution
from evaluation.test_time import (
    budget_matched,
    keep_first,
    refinement_summary,
    rounds_of,
    samples_of,
    scaling_curves,
)
from evaluation.tracking import EPISODE_COLUMNS, Tracker, episode_rows
from rewards.verifier import verify_response
from rollout.loop import PresampledActor

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = SyntheticArithmetic(size=6, min_steps=3, max_steps=3, split="test", seed=2)[:]
FLAG = Critique((StepJudgement(1, False, feedback="Step 1 is wrong."),))
PASS = Critique((StepJudgement(1, True),))


def record(problem, attempts, tokens=10):
    """An episode as the environment leaves it: attempts reviewed in turn, the last one standing."""
    r = EpisodeRecord(problem)
    for steps, critique in attempts:
        r.attempts.append(Attempt(list(steps), critique, None, verify_response("\n".join(steps), problem.answer)))
        r.generations.append(Generation([], [0] * tokens))
    r.steps = list(attempts[-1][0])
    r.verification = verify_response("\n".join(r.steps), problem.answer)
    r.final_answer = r.verification.extracted
    r.done = True
    return r


def wrong(problem, seed=0):
    return corrupt_solution(problem, 2, "calculation", random.Random(seed)).steps


def test_fix_and_break_accounting():
    p = PROBLEMS[0]
    fixed = record(p, [(wrong(p), FLAG), (p.steps, PASS)])
    broken = record(p, [(p.steps, FLAG), (wrong(p), PASS)])
    stays_right = record(p, [(p.steps, PASS)])
    stays_wrong = record(p, [(wrong(p), FLAG), (wrong(p, 1), FLAG), (wrong(p, 2), FLAG)])
    assert [o.correct for o in rounds_of(fixed, 3)] == [False, True, True, True]
    assert [o.correct for o in rounds_of(broken, 2)] == [True, False, False]
    assert [o.tokens for o in rounds_of(stays_wrong, 3)] == [10, 20, 30, 30]
    s = refinement_summary([fixed, broken, stays_right, stays_wrong], max_rounds=2)
    assert s["fixed"] == {"R=1": 1, "R=2": 0} and s["broken"] == {"R=1": 1, "R=2": 0}
    assert s["overall"]["R=0"]["correct"] == 2 and s["overall"]["R=1"]["correct"] == 2
    assert s["by_round"]["R=1"]["3"]["n"] == 4
    # the change against the actor alone is paired by problem: one fixed, one broken, over four problems
    assert s["change"]["R=1"] == {"change": 0.0, "ci95": round(1.96 * (2 / 3 / 4) ** 0.5, 4), "gained": 1, "lost": 1,
                                  "n": 4}
    # a likelihood-gated critic's scored tokens are kept apart from the generated ones
    scored = Critique(FLAG.steps, extras={"tokens": 4, "scored_tokens": 9})
    gated = record(p, [(wrong(p), scored), (p.steps, PASS)])
    assert [(o.tokens, o.scored_tokens) for o in rounds_of(gated, 2)] == [(14, 9), (24, 9), (24, 9)]
    assert samples_of([gated], 1, rounds=1)[p.id][0].scored_tokens == 9


def test_keep_first_answers_with_the_original_unless_the_critic_accepts_a_refinement():
    p = PROBLEMS[0]
    fixed = record(p, [(wrong(p), FLAG), (p.steps, PASS)])
    false_alarm = record(p, [(p.steps, FLAG), (wrong(p), FLAG)])  # right, flagged, "refined" into a wrong one
    accepted_break = record(p, [(p.steps, FLAG), (wrong(p), PASS)])
    kept = keep_first(rounds_of(false_alarm, 2))
    assert [o.correct for o in rounds_of(false_alarm, 2)] == [True, False, False]
    assert [o.correct for o in kept] == [True, True, True] and [o.tokens for o in kept] == [10, 20, 20]
    assert [o.correct for o in keep_first(rounds_of(fixed, 2))] == [False, True, True]
    assert [o.correct for o in keep_first(rounds_of(accepted_break, 1))] == [True, False]  # the critic's call
    s = refinement_summary([fixed, false_alarm, accepted_break], max_rounds=1)
    assert s["overall"]["R=1"]["correct"] == 1 and s["keep_first"]["overall"]["R=1"]["correct"] == 2
    assert s["keep_first"]["overall"]["R=0"] == s["overall"]["R=0"]
    assert (s["change"]["R=1"]["gained"], s["change"]["R=1"]["lost"]) == (1, 2)
    assert (s["keep_first"]["change"]["R=1"]["gained"], s["keep_first"]["change"]["R=1"]["lost"]) == (1, 1)


def test_samples_from_replicated_problems_and_curves():
    copies = replicate(PROBLEMS[:2], 3)
    assert [c.id for c in copies[:3]] == [f"{PROBLEMS[0].id}#{j}" for j in range(3)]
    assert all(c.metadata["replica_of"] == PROBLEMS[0].id for c in copies[:3])
    # problem 0: wrong, right, right (the critic rejects the wrong one); problem 1: wrong twice, then right
    plan = [(False, False), (True, True), (True, True), (False, True), (False, True), (True, True)]
    records = [record(c, [(c.steps if ok else wrong(c), PASS if accepted else FLAG)]) for c, (ok, accepted)
               in zip(copies, plan)]
    samples = samples_of(records, k_max=3)
    assert [s.correct for s in samples[PROBLEMS[0].id]] == [False, True, True]
    difficulty = {p.id: p.difficulty for p in PROBLEMS}
    curves = scaling_curves(samples, difficulty, [1, 3], ["majority", "critic_filtered_majority", "best_of_k", "pass@k"])
    assert curves["majority"]["k=1"]["overall"] == 0.0 and curves["pass@k"]["k=3"]["overall"] == 1.0
    assert curves["critic_filtered_majority"]["k=1"]["overall"] == 0.0  # all rejected -> plain vote
    assert curves["best_of_k"]["k=3"]["overall"] == 0.5  # problem 0 picks sample 2 (right); problem 1 picks sample 1
    assert curves["majority"]["k=3"]["mean_tokens"] == 30
    matched = budget_matched(samples, 20, None, difficulty)
    assert matched["k"] == 2 and matched["tokens_per_sample"] == 10 and not matched["capped"]
    # a budget of 5 samples when 3 were drawn: all 3 are voted, and the result says majority got fewer tokens
    matched = budget_matched(samples, 50, None, difficulty)
    assert matched["k"] == 3 and matched["capped"]


def test_presampled_actor_replays_first_then_delegates():
    p = PROBLEMS[0]
    sampled = record(p, [(wrong(p), PASS)], tokens=7)

    class Refiner:
        def act_batch(self, observations, infos):
            return ["\n".join(p.steps)] * len(infos)

    from envs import EnvConfig
    from rollout import rollout

    records = rollout([p], PresampledActor({p.id: sampled}, Refiner()), OracleCritic(), EnvConfig(max_refinements=1))
    [r] = records
    assert r.attempts[0].steps == list(sampled.steps) and not r.attempts[0].critique.is_correct
    assert r.correct and len(r.generations) == 1 and len(r.generations[0].completion_ids) == 7


def test_wandb_offline_run_holds_the_episode_table(tmp_path):
    p = PROBLEMS[1]
    rows = episode_rows([record(p, [(wrong(p), FLAG), (p.steps, PASS)])])
    assert len(rows) == 2 and rows[0][EPISODE_COLUMNS.index("feedback")] == "Step 1 is wrong."
    with Tracker("offline", tmp_path, name="unit") as tracker:
        tracker.table("episodes/oracle", EPISODE_COLUMNS, rows)
        tracker.log({"accuracy": 0.5})
        where = tracker.directory
    assert where is not None and where.name.startswith("offline-run-")
    tables = list((where / "files" / "media" / "table").rglob("*.table.json"))
    assert tables, list(where.rglob("*"))
    data = json.loads(tables[0].read_text())
    assert data["columns"] == EPISODE_COLUMNS and data["data"][1][4] == "\n".join(p.steps)
    assert list(where.glob("run-*.wandb"))
    Tracker("disabled", tmp_path).table("x", ["a"], [[1]])  # a disabled tracker does nothing, quietly


def test_eval_test_time_stage_writes_tables_plots_and_wandb(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), f"run_dir={tmp_path}", "stages=[warmup,eval_test_time]",
           "test_time.critics=[none,oracle]", "test_time.problems_per_level=2", "test_time.levels=[2,5]",
           "test_time.hard_levels=[5]", "test_time.k_max=2", "test_time.budget_k_max=3", "test_time.ks=[1,2]",
           "test_time.max_rounds=1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "eval_test_time.json").read_text())
    assert set(result["metrics"]["refine"]) == {"none", "oracle"}
    assert set(result["metrics"]["scaling"]["oracle"]) == {"critic_filtered_majority", "best_of_k", "refine_then_majority"}
    assert (tmp_path / "results" / "accuracy_vs_k.png").stat().st_size > 1000
    md = (tmp_path / "results" / "eval_test_time.md").read_text()
    assert "Critique -> refine" in md and "1 round(s), first attempt kept unless a refinement is accepted" in md
    change = result["metrics"]["refine"]["oracle"]["change"]["R=1"]  # against the actor alone, paired by problem
    assert change["n"] == 4 and change["lost"] == 0  # the oracle breaks no right answer
    assert f"| {change['change']:+.3f} ± {change['ci95']:.3f} |" in md
    assert f"{100 * change['change']:+.1f} ± {100 * change['ci95']:.1f} points" in (tmp_path / "report.md").read_text()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))  # one W&B run per stage
    assert len(runs) == 2 and any("episodes/greedy" in str(p) for r in runs for p in (r / "files").rglob("*.table.json"))
