"""Episodes per second: the in-process rollout loop vs 1 and 2 Ray rollout workers, in one run.

Every setting plays the same problems with the same actor (sampled, T=1) and the oracle critic (one refinement
round). The in-process loop uses all the machine's threads; each Ray worker gets ``threads`` torch threads.
Ratios are against the in-process loop measured in the same run.

    python benchmarks/ray_scaling.py [--problems 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents import Actor, ActorConfig, PromptTemplate, SamplingParams  # noqa: E402
from agents.backends.hf import HFBackend  # noqa: E402
from critics.registry import CriticConfig  # noqa: E402
from envs import SyntheticArithmetic  # noqa: E402
from rollout.ray_pool import LocalRolloutRunner, RayConfig, RayRolloutPool, WorkerSpec  # noqa: E402
from storage import atomic_write_json  # noqa: E402

CRITICS = {"oracle": CriticConfig(name="oracle")}
ENV = {"max_refinements": 1}


def timed(runner, problems, sampling) -> tuple[float, int]:
    runner.rollout(problems[:16], seed=0, sampling=sampling, env=ENV, critic="oracle")  # warm-up
    start = time.perf_counter()
    records = runner.rollout(problems, seed=0, sampling=sampling, env=ENV, critic="oracle")
    return time.perf_counter() - start, sum(r.correct for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "tiny-actor"))
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per Ray worker")
    parser.add_argument("--local-threads", type=int, default=2, help="torch threads of the in-process loop")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ray_scaling.json"))
    args = parser.parse_args()

    import ray

    problems = SyntheticArithmetic(size=args.problems, split="test", seed=0)[:]
    sampling = SamplingParams(max_new_tokens=160, temperature=1.0, seed=0)
    template = PromptTemplate(number_format="reversed")
    rows = []
    actor = Actor(HFBackend(args.checkpoint, threads=args.local_threads, batch_size=args.batch_size), template, sampling)
    seconds, correct = timed(LocalRolloutRunner(actor, CRITICS, batch_size=args.batch_size), problems, sampling)
    rows.append({"setting": f"in-process loop ({args.local_threads} threads)", "workers": 0, "seconds": seconds,
                 "correct": correct})
    for workers in (1, 2):
        spec = WorkerSpec(args.checkpoint, ActorConfig(number_format="reversed"), sampling, CRITICS, ENV, args.batch_size,
                          args.threads)
        pool = RayRolloutPool(RayConfig(num_workers=workers, threads_per_worker=args.threads), spec)
        seconds, correct = timed(pool, problems, sampling)
        pool.shutdown()
        ray.shutdown()
        rows.append({"setting": f"Ray, {workers} worker(s) x {args.threads} thread(s)", "workers": workers,
                     "seconds": seconds, "correct": correct})
    base = len(problems) / rows[0]["seconds"]
    print(f"{'setting':<36}{'episodes/s':>12}{'ratio':>8}{'correct':>9}")
    for row in rows:
        row["episodes_per_second"] = round(len(problems) / row["seconds"], 2)
        row["ratio_vs_in_process"] = round(row["episodes_per_second"] / base, 2)
        row["seconds"] = round(row["seconds"], 2)
        print(f"{row['setting']:<36}{row['episodes_per_second']:>12}{row['ratio_vs_in_process']:>8}{row['correct']:>9}")
    import os

    atomic_write_json(args.out, {"config": vars(args), "cpu_count": os.cpu_count(), "problems": len(problems),
                                 "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
