"""One rule for building a ``*Config`` dataclass from a plain dict (a recipe file, ``--set`` overrides, a Ray
spec): a key the dataclass lacks is refused with the valid ones listed, instead of a TypeError deep in ``__init__``."""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["config_from_dict"]

C = TypeVar("C")


def config_from_dict(cls: type[C], d: dict[str, Any], what: str, **nested: type) -> C:
    """``cls(**d)`` after checking the keys; ``nested`` names the fields whose dict becomes a dataclass of its own
    (``model=TinyModelConfig``)."""
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {sorted(unknown)}; valid: {sorted(fields)}")
    d = dict(d)
    for key, kind in nested.items():
        if isinstance(d.get(key), dict):
            d[key] = kind(**d[key])
    return cls(**d)
