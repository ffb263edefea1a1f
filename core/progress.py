"""Progress bars for the loops that take minutes (episodes, SFT steps), shown where a person is watching.

A bar appears on an interactive terminal only, so logs, CI and ``nohup`` runs keep one line per stage;
``CRITIQUE_GYM_PROGRESS=1`` forces bars on, ``=0`` off.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

__all__ = ["progress", "show_progress"]


def show_progress() -> bool:
    forced = os.environ.get("CRITIQUE_GYM_PROGRESS")
    return forced == "1" if forced in ("0", "1") else sys.stderr.isatty()


def progress(total: int, unit: str, desc: str | None = None) -> tqdm:
    """A bar over ``total`` items that disappears when done (a no-op bar when not shown)."""
    return tqdm(total=total, unit=unit, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0,
                disable=not show_progress() or total < 2)
