"""Command line for the critique-data pipeline, outside ``train.py``.

    python -m autocritique build --actor checkpoints/tiny-actor --out runs/critique-data [--set key=value ...]
    python -m autocritique build --dataset gsm8k --out runs/gsm8k-critiques --set sampled_problems=0 ...

A critique model is trained on such a dataset with ``python -m trainers critic`` (trainers/__main__.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents import Actor, PromptTemplate, SamplingParams, make_backend
from autocritique.pipeline import AutoCritiqueConfig, build_critique_dataset, write_dataset
from core.cli import parse_overrides
from envs import SyntheticArithmetic, load_gsm8k

ROOT = Path(__file__).resolve().parent.parent


def build(args: argparse.Namespace) -> None:
    config = AutoCritiqueConfig.from_dict(parse_overrides(args.set))
    backend = make_backend("hf", args.actor, threads=args.threads)
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
    args = parser.parse_args(argv)
    {"build": build}[args.command](args)


if __name__ == "__main__":
    main()
