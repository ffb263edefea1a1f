"""How an actor labels its steps: the ``Step k`` label sequences of its greedy solutions to problems of one level.

A self-trained actor keeps the labelling habits of its warm-up (one that never wrote ``Step 5`` labels a fifth
step ``Step 4``); this counts them for each checkpoint given, on the same test-split problems.

    python benchmarks/step_labels.py CHECKPOINT [CHECKPOINT ...] [--level 5] [--problems 40]

Writes ``benchmarks/results/step_labels.json`` (``--out``) and prints the most common sequences per checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents import PromptTemplate, SamplingParams  # noqa: E402
from agents.backends.hf import HFBackend  # noqa: E402
from envs import SyntheticArithmetic  # noqa: E402
from rewards.answer import solution_lines  # noqa: E402
from storage import atomic_write_json  # noqa: E402


def label_sequences(checkpoint: str, level: int, problems: int, seed: int) -> Counter:
    tasks = SyntheticArithmetic(size=problems, min_steps=level, max_steps=level, split="test", seed=seed)[:]
    template = PromptTemplate(number_format="reversed")
    backend = HFBackend(checkpoint, threads=2, batch_size=problems, engine="slots")
    outs = backend.generate([template.prompt(p.question) for p in tasks], SamplingParams(max_new_tokens=160))
    seen = Counter()
    for out in outs:
        lines = solution_lines(template.decode(out[0].text))
        seen[" ".join(line.split(":")[0].removeprefix("Step ") for line in lines if line.startswith("Step"))] += 1
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--level", type=int, default=5)
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "step_labels.json"))
    args = parser.parse_args()
    result = {"config": vars(args), "labels": {}}
    for checkpoint in args.checkpoints:
        seen = label_sequences(checkpoint, args.level, args.problems, args.seed)
        result["labels"][checkpoint] = dict(seen.most_common())
        print(f"{checkpoint}: " + "; ".join(f"{labels or '(none)'}: {n}/{args.problems}"
                                             for labels, n in seen.most_common(3)))
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
