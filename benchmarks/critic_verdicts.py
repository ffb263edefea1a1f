"""Critique throughput of the trained critic by who decides a line is wrong: its own verdicts (``verdicts=model``:
every line gets a generated computation and a generated verdict) against likelihood-gated verdicts
(``verdicts=likelihood``: every line is scored in one forward pass; only the doubted ones are generated), on the
same greedy solutions of the actor, measured in one run. Reported: solutions per second, generated and scored
tokens per solution, and the throughput ratio likelihood / model.

    python benchmarks/critic_verdicts.py [--problems-per-level 25] [--levels 1-8] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from agents.actor import Actor  # noqa: E402
from agents.backends import SamplingParams  # noqa: E402
from agents.backends.hf import HFBackend  # noqa: E402
from agents.prompts import PromptTemplate  # noqa: E402
from critics import ModelCritic, NullCritic  # noqa: E402
from envs import EnvConfig, SyntheticArithmetic  # noqa: E402
from rollout import rollout  # noqa: E402
from storage import atomic_write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actor", default=str(ROOT / "checkpoints" / "tiny-actor"))
    parser.add_argument("--critic", default=str(ROOT / "checkpoints" / "tiny-critic"))
    parser.add_argument("--problems-per-level", type=int, default=25)
    parser.add_argument("--levels", default="1-8", help="difficulty levels, as first-last")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--accept-probability", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "critic_verdicts.json"))
    args = parser.parse_args()

    first, last = (int(x) for x in args.levels.split("-"))
    problems = []
    for level in range(first, last + 1):
        problems += SyntheticArithmetic(size=args.problems_per_level, min_steps=level, max_steps=level, split="test",
                                        seed=500 + level)[:]
    template = PromptTemplate(number_format="reversed")
    actor_backend = HFBackend(args.actor, batch_size=args.batch, threads=args.threads)
    actor = Actor(actor_backend, template, SamplingParams(max_new_tokens=160))
    records = rollout(problems, actor, NullCritic(), EnvConfig(action_unit="solution", max_refinements=0),
                      batch_size=args.batch)
    steps = [r.steps for r in records]
    backend = HFBackend(args.critic, batch_size=args.batch, threads=args.threads)

    rows = {}
    for verdicts in ("model", "likelihood"):
        critic = ModelCritic(backend, template, verdicts=verdicts, accept_probability=args.accept_probability)
        critic.critique_batch(problems[: args.batch], steps[: args.batch])  # warm-up
        start = time.perf_counter()
        critiques = critic.critique_batch(problems, steps)
        seconds = time.perf_counter() - start
        rows[verdicts] = {
            "solutions": len(problems), "seconds": round(seconds, 2),
            "solutions_per_s": round(len(problems) / seconds, 2),
            "generated_tokens_per_solution": round(sum(c.extras["tokens"] for c in critiques) / len(problems), 1),
            "scored_tokens_per_solution": round(sum(c.extras.get("scored_tokens", 0) for c in critiques)
                                                / len(problems), 1),
            "flagged": sum(not c.is_correct for c in critiques),
        }
    ratio = round(rows["likelihood"]["solutions_per_s"] / rows["model"]["solutions_per_s"], 2)
    result = {"config": vars(args) | {"device": str(backend.device), "torch_threads": torch.get_num_threads(),
                                      "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
              "rows": rows, "ratios": {"likelihood_over_model": ratio}}
    print(f"{'verdicts':<12}{'solutions/s':>13}{'seconds':>10}{'generated/sol':>15}{'scored/sol':>12}{'flagged':>9}")
    for name, row in rows.items():
        print(f"{name:<12}{row['solutions_per_s']:>13}{row['seconds']:>10}{row['generated_tokens_per_solution']:>15}"
              f"{row['scored_tokens_per_solution']:>12}{row['flagged']:>9}")
    print(f"likelihood / model throughput = {ratio}")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
