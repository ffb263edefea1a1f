"""How to sample and what comes back: the data every LM backend, actor and critic exchanges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SamplingParams", "Completion", "Prompt"]

Prompt = str | Sequence[int]  # text, or token ids (exact: what a trainer later trains on)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; ``temperature == 0`` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    """One sampled continuation, with the exact token ids it was sampled as."""

    text: str
    token_ids: list[int]
    prompt_token_ids: list[int]
    logprobs: list[float] | None = None
    finish_reason: str = "stop"  # "stop" (EOS or a stop string) | "length"

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)
