"""The one language-model backend protocol: every model user (actor, critic, annotator) goes through it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["SamplingParams", "Completion", "LMBackend", "Prompt", "check_score_inputs", "continuation_ids",
           "truncate_at_stop"]

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


@runtime_checkable
class LMBackend(Protocol):
    """Batched generation: ``generate(prompts, sampling)[i]`` holds ``sampling.n`` completions of prompt ``i``;
    ``score(prompts, continuations)[i]`` is the log-probability of continuation ``i`` (text) after prompt ``i``
    (the sum over its tokens), what a critic needs to ask how likely it finds a step someone else wrote."""

    name: str
    tokenizer: Any  # a transformers tokenizer, or None for a backend that only speaks text

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[list[Completion]]: ...

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]: ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` just after the first stop string (the stop string is kept, as a step's newline is)."""
    cut = min((text.find(s) + len(s) for s in stop if s and s in text), default=None)
    return (text, False) if cut is None else (text[:cut], True)


def check_score_inputs(prompts: Sequence[Prompt], continuations: Sequence[str]) -> None:
    if len(prompts) != len(continuations):
        raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} continuations")
    for i, text in enumerate(continuations):
        if not text:
            raise ValueError(f"score: continuation {i} is empty")


def continuation_ids(encode: Callable[[str], list[int]], prompt: Prompt, continuation: str) -> tuple[list[int], list[int]]:
    """``(prompt ids, continuation ids)`` for scoring. A text prompt is encoded together with its continuation
    (so the tokens are the ones the model would have produced) whenever that keeps the prompt's own tokens."""
    head = encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not head:
        raise ValueError("score: a prompt is empty")
    if isinstance(prompt, str):
        joint = encode(prompt + continuation)
        if joint[: len(head)] == head and len(joint) > len(head):
            return head, joint[len(head):]
    return head, encode(continuation)
