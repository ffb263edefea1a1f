"""Loading the Hydra config for ``train.py`` into the typed :class:`~pipeline.schema.RunConfig`, with errors that
name the bad key and list the valid ones.

``train.py`` composes its config with Hydra's compose API rather than ``@hydra.main``: the run folder is the
project's own (stages cache and resume inside ``run_dir``), and a typo can be answered with the list of valid
keys at that level, which Hydra's own error does not give.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.schema import RunConfig, register_schema
from trainers.registry import ALGORITHMS

__all__ = ["ALGO_ALIASES", "CONFIG_DIR", "ConfigError", "algo_override", "load_config", "config_groups"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A bad override: unknown key, unknown choice, or unparsable value."""


def config_groups(config_dir: Path = CONFIG_DIR) -> dict[str, list[str]]:
    """``{group: [choices]}`` from the config folder (``critic: [none, oracle, ...]``)."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(config_dir.iterdir())
        if d.is_dir() and not d.name.startswith((".", "_"))
    }


def _compose(overrides: list[str], config_dir: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _split_override(override: str) -> tuple[str, str]:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key=value")
    key, value = override.split("=", 1)
    return key.strip(), value


# ``algo=NAME`` or ``algo=[A,B]``: the words users say for ``self_improve.algorithms`` (trainers/registry.py)
ALGO_ALIASES = {"critique_loop": "critique"}


def algo_override(value: str) -> str:
    """``algo=...`` as the ``self_improve.algorithms`` override it stands for; an unknown name lists the valid."""
    names = [n.strip() for n in value.strip().removeprefix("[").removesuffix("]").split(",") if n.strip()]
    valid = sorted({*ALGORITHMS.names(), *ALGO_ALIASES})
    unknown = [n for n in names if ALGO_ALIASES.get(n, n) not in ALGORITHMS.names()]
    if not names or unknown:
        raise ConfigError(f"unknown choice {value!r} for algo; valid: {', '.join(valid)} (or a list: algo=[rft,grpo])")
    return f"self_improve.algorithms=[{','.join(ALGO_ALIASES.get(n, n) for n in names)}]"


def load_config(overrides: list[str] | None = None, config_dir: Path = CONFIG_DIR) -> RunConfig:
    """The composed config as a :class:`RunConfig` (every section its own dataclass)."""
    register_schema()
    overrides = [algo_override(_split_override(o)[1]) if _split_override(o)[0] == "algo" else o for o in overrides or []]
    groups = config_groups(config_dir)
    group_overrides, value_overrides = [], []
    for override in overrides:
        key, value = _split_override(override)
        if key.startswith(("+", "~")):
            raise ConfigError(f"override {override!r}: adding or deleting keys is not supported; "
                              f"set an existing key instead")
        if key in groups:
            if value not in groups[key]:
                raise ConfigError(f"unknown choice {value!r} for {key}; valid: {', '.join(groups[key])}")
            group_overrides.append(override)
        else:
            value_overrides.append((key, override))
    try:
        base = _compose(group_overrides, config_dir)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err)) from err
    for key, _ in value_overrides:
        _check_key(base, key)
    try:
        cfg = _compose(group_overrides + [o for _, o in value_overrides], config_dir)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"{err}") from err
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"required key(s) not set: {', '.join(missing)} (e.g. {missing[0]}=...)")
    OmegaConf.resolve(cfg)
    try:
        return OmegaConf.to_object(cfg)
    except (ValueError, OmegaConfBaseException) as err:  # a dataclass's own check (__post_init__)
        raise ConfigError(str(err).split("\n")[0]) from err


def _check_key(cfg: DictConfig, dotted: str) -> None:
    node = cfg
    walked = []
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig) or part not in node.keys():  # `in node` is False for ??? values
            where = ".".join(walked) or "the top level"
            valid = sorted(node.keys()) if isinstance(node, DictConfig) else []
            raise ConfigError(f"unknown config key {dotted!r}: {where} has no key {part!r}; "
                              f"valid keys there: {', '.join(map(str, valid))}")
        walked.append(part)
        if i < len(parts) - 1:
            node = node[part]
