"""LM backends behind one protocol (:class:`core.LMBackend`), in one registry: ``hf`` (transformers),
``openai`` (any OpenAI-compatible server), ``vllm`` (vLLM's offline engine, GPU).

Entries name their class by import path (as gymnasium's registry does), so a backend's dependencies load only
when it is built: the CPU install never imports vLLM, and reading a config never imports torch.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.backends.base import truncate_at_stop
from agents.backends.gguf import PACKAGE_SCHEME, resolve_model
from core.protocols import LMBackend
from core.registry import Registry
from core.sampling import Completion, Prompt, SamplingParams

__all__ = ["BACKENDS", "BackendEntry", "Completion", "LMBackend", "Prompt", "SamplingParams", "load_backend",
           "make_backend", "resolve_model", "trainable", "truncate_at_stop"]


@dataclass(frozen=True)
class BackendEntry:
    entry_point: str  # "module:Class"
    about: str

    def load(self) -> type:
        module, _, name = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), name)


BACKENDS: Registry[BackendEntry] = Registry("backend")
BACKENDS.register("hf", BackendEntry("agents.backends.hf:HFBackend", "any transformers causal LM, CPU or CUDA"))
BACKENDS.register("openai", BackendEntry("agents.backends.openai:OpenAIBackend", "an OpenAI-compatible server"))
BACKENDS.register("vllm", BackendEntry("agents.backends.vllm:VLLMBackend", "vLLM's offline engine (GPU)"))


def make_backend(kind: str, model: str, **kwargs: Any) -> LMBackend:
    """Build a backend by registry name with its own keyword arguments (a GGUF ``model`` loads from its cached
    HF folder, agents/backends/gguf.py)."""
    cls = BACKENDS[kind].load()
    if kind != "openai":
        model = resolve_model(model)
    return cls(model=model, **kwargs) if kind == "openai" else cls(model, **kwargs)


def load_backend(kind: str, model: str, *, batch_size: int = 64, threads: int = 2,
                 base_url: str = "http://127.0.0.1:8000/v1", served_model: str | None = None,
                 engine: str = "auto") -> LMBackend:
    """The backend a role's config names (actor, critic and annotator configs share these keys).

    A served model is tokenised locally when ``model`` is a local folder (or GGUF file), so its prompts are
    rendered here (chat template included) and sent as text to ``/v1/completions``; without one, prompts go to
    ``/v1/chat/completions`` as a user message and the server applies its chat template (hosted APIs, which
    serve only chat). The API key is ``$OPENAI_API_KEY``, if set.
    """
    if kind == "hf":
        return make_backend("hf", model, batch_size=batch_size, threads=threads, engine=engine)
    if kind == "openai":
        from transformers import AutoTokenizer

        local = resolve_model(model) if Path(model).exists() or model.startswith(PACKAGE_SCHEME) else None
        tokenizer = AutoTokenizer.from_pretrained(local) if local else None
        return make_backend("openai", served_model or model, base_url=base_url, tokenizer=tokenizer,
                            chat=tokenizer is None, api_key=os.environ.get("OPENAI_API_KEY"))
    return make_backend(kind, model)


def trainable(backend: LMBackend) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a backend whose weights live in this process (``hf``), for trainers that
    fine-tune the actor in place; any other backend gets an error that says so."""
    model, tokenizer = getattr(backend, "model", None), getattr(backend, "tokenizer", None)
    if model is None or not hasattr(model, "state_dict") or tokenizer is None:
        raise ValueError(f"training needs the model's weights in this process (actor.backend=hf); the "
                         f"{getattr(backend, 'name', type(backend).__name__)!r} backend has none")
    return model, tokenizer
