"""Command line for training outside ``train.py``: a critique model on critique datasets.

    python -m trainers critic --data runs/critique-data/critiques.jsonl --actor checkpoints/tiny-actor \\
        --out runs/critic [--set init=scratch --set train_steps=3000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autocritique.pipeline import dataset_provenance, read_dataset
from core.cli import parse_overrides
from trainers.critic_sft import CriticSFTConfig, train_tiny_critic

ROOT = Path(__file__).resolve().parent.parent


def critic(args: argparse.Namespace) -> None:
    config = CriticSFTConfig.from_dict(parse_overrides(args.set))
    rows = [row for path in args.data for row in read_dataset(path)]
    # what the data was, as the critic_training stage records it (when every file has its stats)
    data = [dataset_provenance(path) for path in args.data]
    data = None if None in data else data[0] if len(data) == 1 else data
    summary = train_tiny_critic(config, rows, args.out, actor_checkpoint=args.actor, data=data)
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("critic", help="train a critique model on a critique dataset")
    t.add_argument("--data", required=True, action="append", help="a critiques.jsonl (repeat to train on several)")
    t.add_argument("--actor", default=str(ROOT / "checkpoints" / "tiny-actor"))
    t.add_argument("--out", required=True)
    t.add_argument("--set", action="append", default=[], help="CriticSFTConfig key=value")
    args = parser.parse_args(argv)
    {"critic": critic}[args.command](args)


if __name__ == "__main__":
    main()
