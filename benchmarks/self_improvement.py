"""Training-time supervision in the tiny world: RFT vs critique-in-the-loop (vs GRPO) at equal generation budget.

Runs the ``self_improve`` stage -- the same code and config as ``python train.py`` -- once per (samples per
problem N, seed), each in its own run folder (a finished run is read back, so an interrupted benchmark
continues), and tabulates held-out greedy accuracy after the last iteration by level band against the starting
actor's: the warm-up's own levels, the levels above them, and the hardest two; plus exploration (share of
training problems with a verified solution), diversity (distinct verified solutions per problem) and the
generations spent. Everything not given on the command line is the config's (``configs/config.yaml``); ``--set``
adds overrides to every run.

    python benchmarks/self_improvement.py --samples 4 --seeds 0 1          # benchmarks/results/self_improvement.{json,md}
    python benchmarks/self_improvement.py --samples 2 4 8 --seeds 0 --algorithms rft critique grpo

``--final-eval K`` also measures the starting actor and each algorithm's last checkpoint on ``K`` more held-out
problems per level (a draw of their own, greedy, no critic) and gives each level's change with a 95 % interval
paired by problem: with 100 problems a level's change moves by about +-4 points from answers that flip either
way, too coarse to tell a 2-point drop from none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataclasses import asdict, replace  # noqa: E402

from agents.actor import build_actor  # noqa: E402
from critics import NullCritic  # noqa: E402
from envs.registry import problems_for  # noqa: E402
from evaluation.metrics import paired_change  # noqa: E402
from pipeline import load_config, run_stages  # noqa: E402
from pipeline.checkpoints import repo_path  # noqa: E402
from pipeline.context import env_settings  # noqa: E402
from rollout import rollout  # noqa: E402
from storage import atomic_write_json, atomic_write_text  # noqa: E402


def run_one(n: int, seed: int, algorithms: list[str], extra: list[str], out: Path) -> dict:
    folder = out / f"N{n}-seed{seed}"
    overrides = ["recipe=paper_tiny", "stages=[self_improve]", f"run_dir={folder}", f"seed={seed}",
                 "critic.model=checkpoints/tiny-critic",
                 f"self_improve.samples_per_problem={n}", f"self_improve.algorithms=[{','.join(algorithms)}]",
                 "tracking.mode=disabled", "resume=true", *extra]
    results = folder / "results" / "self_improve.json"
    cached = json.loads(results.read_text()) if results.exists() else None
    cfg = load_config(overrides + ["rerun=[self_improve]"])
    # the resolved settings too, so a run cached under other config defaults is not read back as this one (a
    # cache from before they were recorded is trusted on its overrides)
    settings = json.loads(json.dumps(asdict(cfg.self_improve), default=str))
    if (cached is None or cached.get("benchmark_overrides") != overrides
            or cached.get("benchmark_settings", settings) != settings):
        started = time.perf_counter()
        run_stages(cfg)
        cached = json.loads(results.read_text())
        cached["benchmark_overrides"], cached["seconds"] = overrides, round(time.perf_counter() - started, 1)
        cached["benchmark_settings"] = settings
        atomic_write_json(results, cached)
    return cached


def final_eval(n: int, seed: int, algorithms: list[str], extra: list[str], out: Path, per_level: int,
               split: str | None = None) -> dict:
    """Greedy accuracy of the starting actor and each algorithm's last checkpoint on ``per_level`` fresh problems
    per level of ``split`` (default: the runs' ``eval_split``; ``train`` to choose settings without the test
    split), and each level's change with its 95 % interval paired by problem (normal approximation to the mean
    of the per-problem differences); likewise each later algorithm against each earlier one on the same problems
    (``versus``, e.g. ``critique - rft``: the lead with its own interval). Cached in the run folder."""
    folder = out / f"N{n}-seed{seed}"
    cfg = load_config(["recipe=paper_tiny", f"seed={seed}", *extra])
    si = cfg.self_improve
    split = split or si.eval_split
    cached = folder / "results" / (f"final_eval_{per_level}.json" if split == si.eval_split
                                   else f"final_eval_{split}_{per_level}.json")
    models = {"start": repo_path(si.actor)} | {
        alg: folder / "self_improve" / alg / f"iter_{si.iterations}" / "model" for alg in algorithms}
    if cached.exists():
        result = json.loads(cached.read_text())
        # measured again: a cache of other checkpoints (a run extended by more iterations), or from before the
        # checkpoints and the leads were recorded
        if "versus" in result and result.get("models") == {k: str(v) for k, v in models.items()}:
            return result
    problems = problems_for(cfg.problems, "final_heldout", seed, split, size=per_level * len(cfg.problems.levels))
    env = env_settings(cfg, action_unit="solution", max_refinements=0)
    outcomes = {}
    for name, path in models.items():
        actor = build_actor(replace(cfg.actor, model=None, temperature=0.0, batch_size=128), str(path), seed=seed)
        records = rollout(problems, actor, NullCritic(), env, batch_size=256, seed=seed)
        outcomes[name] = [int(r.correct) for r in records]
    levels = [str(p.difficulty) for p in problems]
    by_level = {lv: [i for i, at in enumerate(levels) if at == lv] for lv in sorted(set(levels), key=int)}

    def paired(a: str, b: str) -> dict:  # b - a, level by level, paired by problem
        return {lv: paired_change([outcomes[b][i] - outcomes[a][i] for i in rows]) for lv, rows in by_level.items()}

    result = {"per_level": per_level, "split": split, "models": {k: str(v) for k, v in models.items()},
              "accuracy": {}, "change": {}, "versus": {}}
    for name, got in outcomes.items():
        result["accuracy"][name] = {lv: round(_mean([got[i] for i in rows]), 4) for lv, rows in by_level.items()}
        if name != "start":
            result["change"][name] = paired("start", name)
    for i, a in enumerate(algorithms):
        for b in algorithms[i + 1:]:
            result["versus"][f"{b} - {a}"] = paired(a, b)
    atomic_write_json(cached, result)
    return result


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else float("nan")


BANDS = ("warmup_levels", "next", "above", "hardest")  # the warm-up's levels, the next one, all above, the top two


def band(by_level: dict[str, float], levels: list[int]) -> float:
    values = [by_level[str(lv)] for lv in levels if str(lv) in by_level]
    return sum(values) / len(values) if values else float("nan")


def summarise(history: list[dict], bands: dict[str, list[int]]) -> dict:
    start, last = history[0]["heldout"], history[-1]["heldout"]
    out = {"overall": last["overall"], "start_overall": start["overall"],
           "exploration": statistics.mean(h["exploration"] for h in history[1:]),
           "diversity": statistics.mean(h["diversity"] for h in history[1:]),
           "generations": sum(h["generations"] for h in history[1:]),
           "worst_level_change": min(last["by_difficulty"][lv] - start["by_difficulty"][lv] for lv in start["by_difficulty"]),
           "by_difficulty": last["by_difficulty"], "start_by_difficulty": start["by_difficulty"],
           "iterations": [{"iteration": h["iteration"], "overall": h["heldout"]["overall"],
                           "by_difficulty": h["heldout"]["by_difficulty"], "exploration": h.get("exploration"),
                           "diversity": h.get("diversity")} for h in history]}
    for name, levels in bands.items():
        out[name], out[f"start_{name}"] = band(last["by_difficulty"], levels), band(start["by_difficulty"], levels)
    return out


def fmt(values: list[float]) -> str:
    """A mean, with the half-range over seeds when there are several."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[4], help="N: samples per problem (the budget)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--algorithms", nargs="+", default=["rft", "critique"])
    parser.add_argument("--warmup-levels", default="1-4", help="the starting actor's reference levels, lo-hi")
    parser.add_argument("--set", nargs="*", default=[], help="more config overrides for every run (key=value)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_self_improvement"), help="the runs' folder")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="where the table goes")
    parser.add_argument("--name", default="self_improvement", help="the results files' name")
    parser.add_argument("--final-eval", type=int, default=0, metavar="K",
                        help="also measure the start and each last checkpoint on K fresh problems per level")
    parser.add_argument("--final-split", choices=["test", "train"], default=None,
                        help="the split of --final-eval's problems (default: the runs' eval_split)")
    args = parser.parse_args(argv)
    lo, hi = map(int, args.warmup_levels.split("-"))
    cfg = load_config(args.set)
    levels = cfg.problems.levels
    bands = {"warmup_levels": [lv for lv in levels if lo <= lv <= hi], "next": [hi + 1],
             "above": [lv for lv in levels if lv > hi], "hardest": levels[-2:]}
    runs = {(n, seed): run_one(n, seed, args.algorithms, args.set, Path(args.out)) for n in args.samples for seed in args.seeds}
    summary = {f"N={n} seed={seed}": {alg: summarise(r["metrics"]["history"][alg], bands) for alg in args.algorithms}
               for (n, seed), r in runs.items()}

    head = ["N", "algorithm", "seeds", f"levels {lo}-{hi}", f"level {hi + 1}",
            f"levels {bands['above'][0]}-{bands['above'][-1]}",
            f"levels {bands['hardest'][0]}-{bands['hardest'][-1]}", "overall", "worst level change", "exploration",
            "diversity", "generations"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in args.samples:
        start = [summary[f"N={n} seed={seed}"][args.algorithms[0]] for seed in args.seeds]
        table.append(f"| {n} | starting actor | {len(args.seeds)} | " + " | ".join(
            fmt([s[f"start_{b}"] for s in start]) for b in BANDS)
            + f" | {fmt([s['start_overall'] for s in start])} | | | | |")
        for alg in args.algorithms:
            rows = [summary[f"N={n} seed={seed}"][alg] for seed in args.seeds]
            cells = [fmt([r[b] for r in rows]) for b in BANDS]
            cells += [fmt([r["overall"] for r in rows]), fmt([r["worst_level_change"] for r in rows]),
                      fmt([r["exploration"] for r in rows]), fmt([r["diversity"] for r in rows]),
                      str(rows[0]["generations"])]
            table.append(f"| {n} | {alg} | {len(args.seeds)} | " + " | ".join(cells) + " |")

    per_level = ["| N | algorithm | seed | iteration | " + " | ".join(map(str, levels)) + " | overall |",
                 "|" + "---|" * (len(levels) + 5)]
    for key, algs in summary.items():
        n, seed = (part.split("=")[1] for part in key.split())
        for alg, s in algs.items():
            for it in s["iterations"]:
                per_level.append(f"| {n} | {alg} | {seed} | {it['iteration']} | "
                                 + " | ".join(f"{it['by_difficulty'].get(str(lv), float('nan')):.2f}" for lv in levels)
                                 + f" | {it['overall']:.3f} |")
    finals = {(n, seed): final_eval(n, seed, args.algorithms, args.set, Path(args.out), args.final_eval,
                                    args.final_split)
              for n in args.samples for seed in args.seeds} if args.final_eval else {}
    final_md: list[str] = []
    if finals:
        split = args.final_split or cfg.self_improve.eval_split
        final_md = [f"**Start and last checkpoint on {args.final_eval} more {split}-split problems "
                    "per level (greedy): each level's change, ± its 95 % interval paired by problem; `b - a` rows: one "
                    "algorithm's accuracy less another's on the same problems**", "",
                    "| N | seed | model | " + " | ".join(map(str, levels)) + " | worst level change |",
                    "|" + "---|" * (len(levels) + 4)]
        for (n, seed), f in finals.items():
            final_md.append(f"| {n} | {seed} | start (accuracy) | "
                            + " | ".join(f"{f['accuracy']['start'][str(lv)]:.3f}" for lv in levels) + " | |")
            for alg in args.algorithms:
                change = f["change"][alg]
                worst = min(change, key=lambda lv: change[lv]["change"])
                final_md.append(f"| {n} | {seed} | {alg} | " + " | ".join(
                    f"{change[str(lv)]['change']:+.3f} ± {change[str(lv)]['ci95']:.3f}" for lv in levels)
                    + f" | {change[worst]['change']:+.3f} ± {change[worst]['ci95']:.3f} (level {worst}) |")
            for pair, lead in f["versus"].items():
                final_md.append(f"| {n} | {seed} | {pair} | " + " | ".join(
                    f"{lead[str(lv)]['change']:+.3f} ± {lead[str(lv)]['ci95']:.3f}" for lv in levels) + " | |")
        final_md.append("")
    si = cfg.self_improve
    command = f"python benchmarks/self_improvement.py {' '.join(argv if argv is not None else sys.argv[1:])}".strip()
    md = "\n".join([
        f"**Self-improvement at equal generation budget: held-out greedy accuracy after {si.iterations} iterations "
        f"({si.eval_problems_per_level} {si.eval_split}-split problems per level; ± half the range over seeds)**", "",
        *table, "", *final_md, "**By level and iteration**", "", *per_level, "",
        "Wall time: " + ", ".join(f"N={n} seed={seed} {r.get('seconds', '?')} s" for (n, seed), r in runs.items()),
        "", f"Command: `{command}`"])
    out = Path(args.results)
    atomic_write_json(out / f"{args.name}.json", {"args": vars(args), "bands": bands, "summary": summary,
                                                  "final_eval": {f"N={n} seed={s}": f for (n, s), f in finals.items()},
                                                  "overrides": {f"N={n} seed={s}": r["benchmark_overrides"]
                                                                for (n, s), r in runs.items()}})
    atomic_write_text(out / f"{args.name}.md", md + "\n")
    print(md)


if __name__ == "__main__":
    main()
