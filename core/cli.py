"""``--set key=value`` overrides for the package command lines (``python -m autocritique``, ``python -m trainers``)."""

from __future__ import annotations

import json

__all__ = ["parse_overrides"]


def parse_overrides(pairs: list[str]) -> dict:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``: values are read as JSON where they parse, else kept as text."""
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
