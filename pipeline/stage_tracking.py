"""One W&B run per stage, all of a pipeline run in one group: what every stage logs without asking.

The stage itself logs what only it has (episode tables, plots) through ``run.tracker``; after it, this module
logs what its outputs hold: the results' numbers (summary) and tables (``wandb.Table``), the per-iteration
curves of self-improvement, and the datasets and checkpoints it wrote as artifacts.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from evaluation.tracking import Tracker, scalars
from pipeline.context import Run
from storage import read_json

__all__ = ["ARTIFACTS", "log_stage", "stage_tracker"]

# what each stage writes that is worth keeping: (artifact name, type, path under the run folder; globs allowed)
ARTIFACTS: dict[str, list[tuple[str, str, str]]] = {
    "warmup": [("actor", "model", "actor")],
    "critique_data": [("critique-data", "dataset", "critique_data/critiques.jsonl"),
                      ("critique-data-sharegpt", "dataset", "critique_data/critiques_sharegpt.jsonl")],
    "critic_training": [("critic", "model", "critic")],
    "self_improve": [("self-improve-{0}-{1}", "model", "self_improve/*/iter_*/model")],
    "self_talk": [("self-talk-data", "dataset", "self_talk/transcripts.jsonl"), ("self-talk", "model", "self_talk/model")],
}


def stage_tracker(run: Run, name: str, section: Any) -> Tracker:
    """The stage's W&B run: named ``<run>-<stage>``, grouped by the run folder's name, its config section."""
    t = run.cfg.tracking
    group = Path(run.cfg.run_dir).name
    config = {"stage": name, "seed": run.cfg.seed, **({name: asdict(section)} if hasattr(section, "__dataclass_fields__")
                                                      else {})}
    return Tracker(t.mode, run.dir, project=t.project, name=f"{group}-{name}", group=group, config=config)


def log_stage(tracker: Tracker, run: Run, name: str, result: dict[str, Any]) -> None:
    """After a stage: its summary and results as W&B numbers and tables, curves, and its outputs as artifacts."""
    if tracker.run is None:
        return
    tracker.summary({f"stage/{k}": v for k, v in scalars(result).items()})
    path = run.dir / "results" / f"{name}.json"
    if path.exists():
        results = read_json(path)
        tracker.summary(scalars(results["metrics"], prefix="results"))
        tracker.markdown_tables("tables", results.get("tables") or {})
        if name == "self_improve":
            tracker.curves("iteration", [
                {"iteration": h["iteration"], f"{algo}/heldout": h["heldout"]["overall"],
                 **{f"{algo}/{k}": h[k] for k in ("exploration", "diversity", "generations", "tokens") if k in h}}
                for algo, history in results["metrics"]["history"].items() for h in history])
    for art_name, kind, pattern in ARTIFACTS.get(name, []):
        for found in sorted(run.dir.glob(pattern)):
            parts = found.relative_to(run.dir).parts
            label = art_name.format(*[p for p in parts[1:-1]]) if "{" in art_name else art_name
            tracker.artifact(label.replace("_", "-"), kind, found, metadata={"stage": name, "path": str(found)})
