"""Helpers every LM backend shares; the protocol itself is :class:`core.LMBackend`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.sampling import Prompt

__all__ = ["check_score_inputs", "continuation_ids", "truncate_at_stop"]


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
