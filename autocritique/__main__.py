"""Command line for the critique-data pipeline and critic training, outside ``train.py``.

    python -m autocritique build --actor checkpoints/tiny-actor --out runs/critique-data [--set key=value ...]
    python -m autocritique build --dataset gsm8k --out runs/gsm8k-critiques --set sampled_problems=0 ...
    python -m autocritique train --data runs/critique-data/critiques.jsonl --actor checkpoints/tiny-actor \\
        --out runs/critic [--set init=scratch --set train_steps=3000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build(args: argparse.Namespace) -> None:
    from agents import Actor, PromptTemplate, SamplingParams
    from agents.backends.hf import HFBackend
    from autocritique import AutoCritiqueConfig, build_critique_dataset, write_dataset
    from envs import SyntheticArithmetic, load_gsm8k

    config = AutoCritiqueConfig.from_dict(_overrides(args.set))
    backend = HFBackend(args.actor, threads=args.threads)
    actor = Actor(backend, PromptTemplate(number_format=args.number_format),
                  SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0, seed=config.seed))
    if args.dataset == "synthetic":
        problems = SyntheticArithmetic(size=config.total_problems, min_steps=args.min_steps, max_steps=args.max_steps,
                                       split="train", seed=config.seed + 1)[:]
    else:
        problems = list(load_gsm8k(split="train", limit=config.total_problems))
    rows, stats = build_critique_dataset(problems, actor, config)
    path = write_dataset(args.out, rows, stats)
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}, indent=1))
    print(f"wrote {len(rows)} rows to {path}")


def train(args: argparse.Namespace) -> None:
    from autocritique import dataset_provenance, read_dataset
    from trainers.critic_sft import CriticSFTConfig, train_tiny_critic

    config = CriticSFTConfig.from_dict(_overrides(args.set))
    rows = [row for path in args.data for row in read_dataset(path)]
    # what the data was, as the critic_training stage records it (when every file has its stats)
    data = [dataset_provenance(path) for path in args.data]
    data = None if None in data else data[0] if len(data) == 1 else data
    summary = train_tiny_critic(config, rows, args.out, actor_checkpoint=args.actor, data=data)
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autocritique", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="run stages 1-3 and write critiques.jsonl + stats.json")
    b.add_argument("--actor", default=str(ROOT / "checkpoints" / "tiny-actor"))
    b.add_argument("--dataset", choices=["synthetic", "gsm8k"], default="synthetic")
    b.add_argument("--out", required=True)
    b.add_argument("--number-format", default="reversed")
    b.add_argument("--min-steps", type=int, default=1)
    b.add_argument("--max-steps", type=int, default=8)
    b.add_argument("--max-new-tokens", type=int, default=160)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--set", action="append", default=[], help="AutoCritiqueConfig key=value")
    t = sub.add_parser("train", help="train a critique model on a critique dataset")
    t.add_argument("--data", required=True, action="append", help="a critiques.jsonl (repeat to train on several)")
    t.add_argument("--actor", default=str(ROOT / "checkpoints" / "tiny-actor"))
    t.add_argument("--out", required=True)
    t.add_argument("--set", action="append", default=[], help="CriticSFTConfig key=value")
    args = parser.parse_args(argv)
    {"build": build, "train": train}[args.command](args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
