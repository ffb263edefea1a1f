"""Where the run's models live: the shipped checkpoints, and the ones the warm-up and critic stages write."""

from __future__ import annotations

import shutil
from pathlib import Path

from storage import atomic_directory, read_json

REPO = Path(__file__).resolve().parent.parent
SHIPPED_ACTOR = REPO / "checkpoints" / "tiny-actor"
SHIPPED_CRITIC = REPO / "checkpoints" / "tiny-critic"

__all__ = ["REPO", "SHIPPED_ACTOR", "SHIPPED_CRITIC", "copy_checkpoint", "repo_path", "run_checkpoint"]


def repo_path(path: str) -> str:
    """A relative path that is not there from the working directory but is in the repository (a shipped
    checkpoint such as ``checkpoints/tiny-actor-easy``) resolves there; anything else is returned as is."""
    if not Path(path).is_absolute() and not Path(path).exists() and (REPO / path).exists():
        return str(REPO / path)
    return path


def run_checkpoint(configured: str | None, run_dir: str | Path, name: str) -> str | None:
    """``configured`` (a model the config names) if set, else ``run_dir/name`` when a stage has written it."""
    if configured:
        return str(configured)
    path = Path(run_dir) / name
    return str(path) if path.exists() else None


def copy_checkpoint(source: Path, out: Path) -> dict:
    """Copy a shipped checkpoint into the run folder (atomically); returns its recipe.json."""
    if not (source / "model.safetensors").exists():
        raise FileNotFoundError(f"no checkpoint at {source}")
    with atomic_directory(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return read_json(out / "recipe.json")
