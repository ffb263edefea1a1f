"""``HFBackend``: any transformers causal LM on CPU or CUDA, generating with continuous batching over a slot KV
cache (agents/backends/slots.py) or, for models that layout cannot hold, with ``model.generate`` on left-padded
batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from agents.backends.base import check_score_inputs, continuation_ids, truncate_at_stop
from agents.backends.slots import SlotDecoder, left_pad, supports_slots
from core.sampling import Completion, Prompt, SamplingParams

__all__ = ["HFBackend"]


ENGINES = ("auto", "slots", "generate")


class HFBackend:
    """Loads a local folder or a hub id (``model``), or wraps an already loaded model and tokenizer.

    ``engine``: ``slots`` decodes ``batch_size`` rows at a time and refills a row the moment it ends; ``generate``
    runs ``model.generate`` on batches of ``batch_size`` rows, each until its longest row ends (the library's
    reference path); ``auto`` takes ``slots`` whenever every layer is full attention. ``fused``: the slot engine
    runs Llama/Qwen2 models on its lean forward pass (agents/backends/fused.py, the same logits); ``False`` keeps
    the model's own forward. ``ragged``: the lean pass's attention skips the masked columns before each run of
    slots' first own one (the same tokens; log-probabilities to float rounding); ``False`` reads every column,
    the library's logits bit for bit.
    """

    name = "hf"

    def __init__(self, model: str | os.PathLike | Any, tokenizer: Any = None, device: str = "auto",
                 dtype: str = "auto", batch_size: int = 64, threads: int | None = None, engine: str = "auto",
                 fused: bool = True, ragged: bool = True):
        if engine not in ENGINES:
            raise ValueError(f"HFBackend: engine must be one of {ENGINES}, got {engine!r}")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if isinstance(model, (str, os.PathLike)):
            self.path = str(model)
            torch_dtype = torch.float32
            if dtype == "bf16" or (dtype == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()):
                torch_dtype = torch.bfloat16
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch_dtype)
        else:
            self.path = getattr(getattr(model, "config", None), "_name_or_path", "")
            if tokenizer is None:
                raise ValueError("HFBackend: pass the tokenizer with an already loaded model")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self._ends = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}  # a row ends at either
        if engine == "auto":
            engine = "slots" if supports_slots(self.model) else "generate"
        elif engine == "slots" and not supports_slots(self.model):
            raise ValueError(f"HFBackend: engine='slots' needs full attention in every layer; {self.path or 'this model'} "
                             "has sliding-window or recurrent layers (use engine='generate')")
        self.engine, self.fused, self.ragged = engine, fused, ragged
        self._kv_storage: list | None = None  # the slot engine's KV buffers, kept between calls (release_cache)

    def release_cache(self) -> None:
        """Free the slot engine's KV buffers kept between ``generate`` calls; the next call allocates afresh (also
        what to call after the model wrote non-finite keys or values: masked columns must hold finite numbers)."""
        self._kv_storage = None

    def encode(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return [int(t) for t in prompt]

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[list[Completion]]:
        encoded = [self.encode(p) for p in prompts]
        for i, ids in enumerate(encoded):
            if not ids:
                raise ValueError(f"prompt {i} is empty")
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit:
            room = max(1, limit - sampling.max_new_tokens)
            if any(len(ids) > room for ids in encoded):
                # a prompt that does not leave room for the completion keeps its most recent tokens
                encoded = [ids[-room:] for ids in encoded]
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        rows = [ids for ids in encoded for _ in range(sampling.n)]  # one row per sample
        generated = self._schedule(rows, sampling)
        flat = [self._completion(rows[r], ids, lps, sampling) for r, (ids, lps) in enumerate(generated)]
        return [flat[i * sampling.n:(i + 1) * sampling.n] for i in range(len(encoded))]

    @torch.inference_mode()
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]:
        """One forward pass per ``batch_size`` pairs (tokens as ``continuation_ids`` splits them)."""
        check_score_inputs(prompts, continuations)
        pairs = [continuation_ids(self.encode, p, c) for p, c in zip(prompts, continuations)]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        out: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = [(head + cont)[-limit:] if limit else head + cont for head, cont in pairs[start:start + self.batch_size]]
            counts = [len(cont) for _, cont in pairs[start:start + self.batch_size]]
            input_ids, attention, positions = left_pad(chunk, self.tokenizer.pad_token_id)
            width = input_ids.shape[1]
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                                position_ids=positions.to(self.device)).logits
            logprobs = logits[:, :-1].float().log_softmax(-1).gather(-1, input_ids[:, 1:, None].to(self.device))[..., 0]
            out += [float(logprobs[row, width - 1 - n:].sum()) for row, n in enumerate(counts)]
        return out

    def _schedule(self, rows: list[list[int]], sampling: SamplingParams) -> list[tuple[list[int], list | None]]:
        """Generate for every row, ``batch_size`` rows at a time.

        Rows of similar prompt length tend to need similar completion lengths, so they are taken in that order,
        longest first: with ``generate`` fewer rows idle while a batch's longest one finishes, and with ``slots``
        an admitted prompt seldom outgrows the current column.
        """
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r]))
        if self.engine == "slots":
            decoder = SlotDecoder(self.model, self.tokenizer.pad_token_id, slots=self.batch_size, fused=self.fused,
                                  ragged=self.ragged, storage=self._kv_storage)
            self._kv_storage = decoder.storage
            return decoder.run(rows, order, sampling, lambda ids: self._finished(ids, sampling))
        out: list[tuple[list[int], list | None]] = [([], None)] * len(rows)
        for i in range(0, len(order), self.batch_size):
            batch = order[i:i + self.batch_size]
            new_ids, new_lps = self._generate_rows([rows[r] for r in batch], sampling)
            for j, r in enumerate(batch):
                out[r] = (new_ids[j], new_lps[j] if new_lps is not None else None)
        return out

    def _finished(self, ids: list[int], sampling: SamplingParams) -> bool:
        """Whether a row that just grew by ``ids[-1]`` is done; a stop string is looked for where it could have
        just been completed, in the text of the last few tokens."""
        last = ids[-1]
        if len(ids) >= sampling.max_new_tokens or last in self._ends:
            return True
        if not sampling.stop:
            return False
        window = 2 * max(len(s) for s in sampling.stop) + 2
        return truncate_at_stop(self.tokenizer.decode(ids[-window:], skip_special_tokens=True), sampling.stop)[1]

    def _generate_rows(self, batch: list[list[int]],
                       sampling: SamplingParams) -> tuple[list[list[int]], list[list[float]] | None]:
        pad = self.tokenizer.pad_token_id
        input_ids, attention, _ = left_pad(batch, pad)
        width = input_ids.shape[1]
        kwargs: dict[str, Any] = dict(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
            max_new_tokens=sampling.max_new_tokens, pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id,
            return_dict_in_generate=True, output_scores=sampling.logprobs,
        )
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        result = self.model.generate(**kwargs)
        new_tokens = result.sequences[:, width:]
        logprobs = None
        if sampling.logprobs:
            scores = torch.stack(result.scores, dim=1).float().log_softmax(-1)  # (rows, steps, vocab)
            logprobs = scores.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1).tolist()
        return new_tokens.tolist(), logprobs

    def _completion(self, prompt_ids: list[int], ids: list[int], logprobs: list[float] | None,
                    sampling: SamplingParams) -> Completion:
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        finish = "length"
        if eos in ids:
            ids = ids[: ids.index(eos) + 1]
            finish = "stop"
        elif pad != eos and pad in ids:
            ids = ids[: ids.index(pad)]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if sampling.stop:
            cut_text, stopped = truncate_at_stop(text, sampling.stop)
            if stopped:
                # keep the shortest token prefix that covers the text up to and including the stop string
                for k in range(1, len(ids) + 1):
                    if len(self.tokenizer.decode(ids[:k], skip_special_tokens=True)) >= len(cut_text):
                        ids = ids[:k]
                        break
                text, finish = cut_text, "stop"
        if logprobs is not None:
            logprobs = logprobs[: len(ids)]
        return Completion(text, ids, list(prompt_ids), logprobs, finish)
