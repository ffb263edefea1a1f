"""The one results format: ``{"name", "created", "config", "metrics", "tables"}`` as JSON, plus markdown."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from storage import atomic_write_json, atomic_write_text

__all__ = ["write_results"]


def write_results(out_dir: str | Path, name: str, config: dict[str, Any], metrics: dict[str, Any],
                  tables: dict[str, str] | None = None) -> Path:
    """Write ``<out_dir>/<name>.json`` (and ``<name>.md`` with the tables); returns the JSON path."""
    out_dir = Path(out_dir)
    payload = {
        "name": name,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": config,
        "metrics": metrics,
        "tables": tables or {},
    }
    path = atomic_write_json(out_dir / f"{name}.json", payload)
    if tables:
        atomic_write_text(out_dir / f"{name}.md", "\n\n".join(tables.values()) + "\n")
    return path
