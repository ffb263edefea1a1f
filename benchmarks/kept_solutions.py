"""How sound are the solutions self-improvement keeps? Only final answers verify a kept solution, so beyond the
actor's references a right number can come from wrong steps. Per algorithm and level of each run: the kept rows,
how many have every step right by the oracle critic (which knows the reference solution), and how many pass the
reference-free arithmetic check that ``self_improve.keep=arithmetic`` applies.

    python benchmarks/kept_solutions.py runs/bench_si_r2048_s180_t010_i8/N4-seed0 [more run folders] \\
        --out benchmarks/results/kept_solutions.json

A run folder is a pipeline run's (its ``config.json`` and ``self_improve/<algorithm>/iter_<i>/``); the
self-improvement benchmark's are ``<out>/N<n>-seed<s>``. Writes the JSON and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from critics import OracleCritic  # noqa: E402
from envs.registry import ProblemsConfig, problems_for  # noqa: E402
from storage import atomic_write_json, read_jsonl  # noqa: E402
from trainers.self_improve import finished_iterations, keep_rule  # noqa: E402


def drawn_problems(config: dict, iteration: int, levels: list[int]) -> dict:
    """The iteration's training problems by id, drawn again as the stage drew them (``SelfImprover._problems``:
    with a curriculum, per level of those it drew from)."""
    size, source = config["self_improve"]["problems_per_iteration"], ProblemsConfig(**config["problems"])
    if not config["self_improve"]["curriculum"]:
        problems = problems_for(source, "self_improve", config["seed"], "train", size=size, iteration=iteration)
    else:
        problems = problems_for(source, "self_improve", config["seed"], "train", size=-(-size // len(levels)),
                                levels=levels, iteration=iteration)
    return {p.id: p for p in problems}


def measure(run: Path) -> dict:
    config = json.loads((run / "config.json").read_text())
    oracle, arithmetic = OracleCritic(), keep_rule("arithmetic")
    out: dict = {}
    for folder in sorted(p for p in (run / "self_improve").iterdir() if p.is_dir()):
        done = finished_iterations(folder)
        if not done:
            continue
        history = {h["iteration"]: h for h in json.loads((done[-1][1] / "state.json").read_text())["history"]}
        counts: dict[int, dict[str, int]] = defaultdict(lambda: {"kept": 0, "every_step_right": 0, "arithmetic_ok": 0})
        for i, path in done:
            problems = drawn_problems(config, i, history[i]["levels"])
            for _, row in read_jsonl(path / "kept.jsonl"):
                if row["id"] not in problems:
                    raise ValueError(f"{path / 'kept.jsonl'}: kept row of {row['id']!r} is not among the iteration's "
                                     "problems drawn again from the run's config")
                problem = problems[row["id"]]
                c = counts[problem.difficulty]
                c["kept"] += 1
                c["every_step_right"] += oracle.critique(problem, row["steps"]).first_error_step is None
                c["arithmetic_ok"] += arithmetic(row["steps"], None)
        out[folder.name] = {str(level): dict(c) for level, c in sorted(counts.items())}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="pipeline run folders with a self_improve stage")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kept_solutions.json"))
    args = parser.parse_args(argv)
    result = {"command": "python benchmarks/kept_solutions.py " + " ".join(args.runs) + f" --out {args.out}",
              "runs": {run: measure(Path(run)) for run in args.runs}}
    print("| run | algorithm | level | kept | every step right (oracle) | arithmetic right |")
    print("|---|---|---|---|---|---|")
    for run, algorithms in result["runs"].items():
        for algorithm, levels in algorithms.items():
            for level, c in levels.items():
                share = {k: f"{c[k]} ({c[k] / c['kept']:.0%})" for k in ("every_step_right", "arithmetic_ok")}
                print(f"| {run} | {algorithm} | {level} | {c['kept']} | {share['every_step_right']} | {share['arithmetic_ok']} |")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
