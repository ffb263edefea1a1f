"""How numbers are written in the text a model reads and writes.

Small transformers learn multi-digit arithmetic far faster when digits come least-significant first (Lee et al.
2023, "Teaching Arithmetic to Small Transformers"): the model then produces each digit after the digits that
determine its carry. The ``reversed`` codec writes every number that way in the model's text (``51-15=36`` becomes
``15-51=63``), except step indices (``Step 12:``), and is its own inverse, so the environment, the verifier and
the critics always see ordinary numbers. Real checkpoints use the ``plain`` codec (identity).
"""

from __future__ import annotations

import re

__all__ = ["NumberCodec"]

_NUMBER_RE = re.compile(r"(?<![Ss]tep )(?<![\d.])\d+")


class NumberCodec:
    """``encode`` maps canonical text to model text and ``decode`` maps back; ``plain`` is the identity."""

    KINDS = ("plain", "reversed")

    def __init__(self, kind: str = "plain"):
        if kind not in self.KINDS:
            raise ValueError(f"unknown number format {kind!r}; valid: {', '.join(self.KINDS)}")
        self.kind = kind

    def encode(self, text: str) -> str:
        if self.kind == "plain":
            return text
        return _NUMBER_RE.sub(lambda m: m.group()[::-1], text)

    decode = encode  # reversing digits is an involution

    def __repr__(self) -> str:
        return f"NumberCodec({self.kind!r})"
