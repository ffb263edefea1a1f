"""Where the run's models live: the shipped checkpoints, and the ones the warm-up and critic stages write."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

REPO = Path(__file__).resolve().parent.parent
SHIPPED_ACTOR = REPO / "checkpoints" / "tiny-actor"
SHIPPED_CRITIC = REPO / "checkpoints" / "tiny-critic"

__all__ = ["REPO", "SHIPPED_ACTOR", "SHIPPED_CRITIC", "actor_checkpoint", "critic_checkpoint", "copy_checkpoint"]


def actor_checkpoint(cfg: DictConfig) -> str | None:
    """Where the actor the later stages use lives: ``actor.model`` if set, else the warm-up's output."""
    if cfg.actor.get("model"):
        return str(cfg.actor.model)
    path = Path(cfg.run_dir) / "actor"
    return str(path) if path.exists() else None


def critic_checkpoint(cfg: DictConfig) -> str | None:
    """The critique model ``critic=model`` uses: ``critic.model`` if set, else the critic_training stage's."""
    if cfg.critic.get("model"):
        return str(cfg.critic.model)
    path = Path(cfg.run_dir) / "critic"
    return str(path) if path.exists() else None


def copy_checkpoint(source: Path, out: Path) -> dict:
    """Copy a shipped checkpoint into the run folder (atomically); returns its recipe.json."""
    import shutil

    from storage import atomic_directory, read_json

    if not (source / "model.safetensors").exists():
        raise FileNotFoundError(f"no checkpoint at {source}")
    with atomic_directory(out) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return read_json(out / "recipe.json")
