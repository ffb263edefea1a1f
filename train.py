"""critique-gym's entry point: `python train.py [key=value ...]` runs the configured stages in order.

Examples:
    python train.py                                  # the default run (configs/config.yaml)
    python train.py critic=none problems=gsm8k       # swap parts by config group
    python train.py env.max_refinements=3 seed=1     # change any key
    python train.py --cfg                            # print the composed config and exit
"""

from __future__ import annotations

import json
import sys

from omegaconf import OmegaConf

from core.registry import RegistryError
from pipeline import ConfigError, load_config, run_stages


def main(argv: list[str]) -> int:
    show_config = "--cfg" in argv
    overrides = [a for a in argv if a != "--cfg"]
    try:
        cfg = load_config(overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if show_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    try:
        summary = run_stages(cfg)
    except (ConfigError, RegistryError) as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    print(f"\nrun folder: {cfg.run_dir} (stage summaries in stages/, results in results/)")
    for name, result in summary.items():
        print(f"  {name}: {json.dumps(result, default=str)[:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
