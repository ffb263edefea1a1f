"""LM backends behind one protocol: ``HFBackend`` (transformers), ``OpenAIBackend`` (any OpenAI-compatible
server), ``VLLMBackend`` (vLLM's offline engine, GPU)."""

from agents.backends.base import Completion, LMBackend, Prompt, SamplingParams, truncate_at_stop

__all__ = ["Completion", "LMBackend", "Prompt", "SamplingParams", "make_backend", "truncate_at_stop"]


def make_backend(kind: str, model: str, **kwargs) -> LMBackend:
    """Build a backend by name: ``hf`` | ``openai`` | ``vllm`` (each imported only when used)."""
    if kind == "hf":
        from agents.backends.hf import HFBackend

        return HFBackend(model, **kwargs)
    if kind == "openai":
        from agents.backends.openai import OpenAIBackend

        return OpenAIBackend(model=model, **kwargs)
    if kind == "vllm":
        from agents.backends.vllm import VLLMBackend

        return VLLMBackend(model, **kwargs)
    raise ValueError(f"unknown backend {kind!r}; valid: hf, openai, vllm")
