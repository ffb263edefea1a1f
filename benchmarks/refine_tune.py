"""Test-time lever: an actor refine-tuned on its own mistakes, against a control with the same training steps.

Three actors -- the shipped one, ``actor.refine_tune`` (its own mistakes, oracle-critiqued, the reference from the
flagged step on, plus warm-up replay) and the control (``actor.refine_tune.own_errors=false``: each own-mistake
row swapped for one more warm-up example) -- each measured three ways with the shipped critic: greedy accuracy by
level on the held-out split, and critique -> refine on levels 7-8 (100 problems each) on the training split
(2 rounds, for choosing settings) and on the held-out split (3 rounds). Every measurement is a ``train.py``
stage in its own run folder, so a finished one is read back and an interrupted benchmark continues.

    python benchmarks/refine_tune.py        # benchmarks/results/refine_tune.{json,md}; 34 minutes on 2 cores
    python benchmarks/refine_tune.py --critic runs/lever_deep/critic --arms refine_tuned --name refine_tune_deep_critic

``--critic`` pairs the arms with another critique model (a checkpoint folder), ``--arms`` measures some of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evaluation.report import format_table  # noqa: E402
from pipeline import load_config, run_stages  # noqa: E402
from storage import atomic_write_json, atomic_write_text  # noqa: E402

ARMS = {"shipped": None, "refine_tuned": [], "control": ["actor.refine_tune.own_errors=false"]}
HARD = ["test_time.levels=[7,8]", "test_time.problems_per_level=100",
        "test_time.critics=[none,model_likelihood,model,oracle]", "test_time.k_max=1", "test_time.budget_k_max=1",
        "test_time.ks=[1]", "test_time.hard_levels=[7,8]"]
SPLITS = {"train": ["test_time.split=train"], "test": ["recipe=paper_tiny"]}  # 2 rounds / paper_tiny's 3
CRITICS = {"model_likelihood": "trained critic, gated", "model": "trained critic, own verdicts", "oracle": "oracle"}


def run(folder: Path, overrides: list[str]) -> None:
    run_stages(load_config([f"run_dir={folder}", "tracking.mode=disabled", *overrides]))  # finished stages: cached


def stage(folder: Path, name: str, overrides: list[str]) -> dict:
    results = folder / "results" / f"{name}.json"
    if not results.exists():
        run(folder, overrides)
    return json.loads(results.read_text())["metrics"]


def actor_of(arm: str, extra: list[str] | None, out: Path, problems_per_level: int) -> tuple[str, dict | None]:
    if extra is None:
        return "checkpoints/tiny-actor", None
    folder = out / arm / "warmup"
    run(folder, ["stages=[warmup]", f"actor.refine_tune.problems_per_level={problems_per_level}", *extra])
    summary = json.loads((folder / "stages" / "warmup.json").read_text())["refine_tune"]
    return str(folder / "actor"), summary


def refine_rows(metrics: dict) -> dict:
    """Accuracy after the last round (and with the first attempt kept), fixes and breaks summed over rounds."""
    refine = metrics["refine"]
    last = max(refine["none"]["overall"], key=lambda r: int(r.split("=")[1]))
    out = {"alone": refine["none"]["overall"]["R=0"]["accuracy"], "rounds": int(last.split("=")[1])}
    for critic in CRITICS:
        m = refine[critic]
        out[critic] = {"accuracy": m["overall"][last]["accuracy"], "first_kept": m["keep_first"]["overall"][last]["accuracy"],
                       "fixed": sum(m["fixed"].values()), "broken": sum(m["broken"].values())}
    return out


def measure(arm: str, actor: str, out: Path, critic: str) -> dict:
    given = [f"actor.model={actor}"]
    levels = stage(out / arm / "eval_actor", "eval_actor",
                   ["recipe=paper_tiny", "stages=[eval_actor]", "eval.with_critic=false", *given])
    result = {"by_level": levels["accuracy"]["by_difficulty"]}
    for split, extra in SPLITS.items():
        metrics = stage(out / arm / f"test_time_{split}", "eval_test_time",
                        ["stages=[eval_test_time]", f"critic.model={critic}", *given, *HARD, *extra])
        result[split] = refine_rows(metrics)
    return result


def markdown(results: dict) -> str:
    arms = list(results)
    lines = ["| levels 7-8, 200 problems | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for split in SPLITS:
        rounds = results[arms[0]][split]["rounds"]
        lines.append(f"| **{split} split, {rounds} rounds** |" + " |" * len(arms))
        lines.append("| actor alone (greedy) | " + " | ".join(f"{results[a][split]['alone']:.3f}" for a in arms) + " |")
        for critic, label in CRITICS.items():
            cells = [results[a][split][critic] for a in arms]
            lines.append(f"| {label} (fixed / broken) | " + " | ".join(
                f"{c['accuracy']:.3f} ({c['fixed']} / {c['broken']})" for c in cells) + " |")
            lines.append(f"| {label}, first attempt kept | " + " | ".join(f"{c['first_kept']:.3f}" for c in cells) + " |")
    lines += ["", format_table({a: results[a]["by_level"] for a in arms}, list(results[arms[0]]["by_level"]),
                               "Held-out greedy accuracy by level, 100 problems per level")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_refine_tune")
    parser.add_argument("--problems-per-level", type=int, default=750, help="actor.refine_tune.problems_per_level")
    parser.add_argument("--name", default="refine_tune")
    parser.add_argument("--critic", default="checkpoints/tiny-critic", help="the critique model every arm is paired with")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    args = parser.parse_args(argv)
    started, results, tuning = time.perf_counter(), {}, {}
    for arm in args.arms:
        actor, summary = actor_of(arm, ARMS[arm], args.out, args.problems_per_level)
        if summary is not None:
            tuning[arm] = summary
        results[arm] = measure(arm, actor, args.out, args.critic)
        print(f"[refine_tune] {arm}: {json.dumps(results[arm]['test'])}")
    table = markdown(results)
    report = {"results": results, "refine_tune": tuning, "problems_per_level": args.problems_per_level,
              "critic": args.critic,
              "command": "python benchmarks/refine_tune.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "seconds": round(time.perf_counter() - started, 1)}
    target = ROOT / "benchmarks" / "results"
    atomic_write_json(target / f"{args.name}.json", report)
    atomic_write_text(target / f"{args.name}.md", table)
    print(table)


if __name__ == "__main__":
    main()
