"""``VLLMBackend``: vLLM's offline engine, for GPUs. Install with ``pip install -e .[vllm]`` (CUDA only).

vLLM is imported only when this backend is built, so the CPU install never needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.backends.base import check_score_inputs, continuation_ids
from core.sampling import Completion, Prompt, SamplingParams

__all__ = ["VLLMBackend"]


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, dtype: str = "auto", gpu_memory_utilization: float = 0.5, seed: int = 0,
                 **engine_kwargs: Any):
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError("VLLMBackend needs vLLM: pip install -e .[vllm] (a CUDA machine)") from err
        self.llm = LLM(model=model, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, seed=seed,
                       **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VSampling
        from vllm.inputs import TokensPrompt

        params = VSampling(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                           max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                           include_stop_str_in_output=True, seed=sampling.seed,
                           logprobs=0 if sampling.logprobs else None)
        inputs = [p if isinstance(p, str) else TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        results = self.llm.generate(inputs, params, use_tqdm=False)
        out = []
        for result in results:
            row = []
            for o in result.outputs:
                logprobs = None
                if sampling.logprobs and o.logprobs:
                    logprobs = [step[token].logprob for step, token in zip(o.logprobs, o.token_ids)]
                row.append(Completion(o.text, list(o.token_ids), list(result.prompt_token_ids), logprobs,
                                      "length" if o.finish_reason == "length" else "stop"))
            out.append(row)
        return out

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]:
        """The prompt's log-probabilities from one prefill (``prompt_logprobs``), summed over the continuation."""
        from vllm import SamplingParams as VSampling
        from vllm.inputs import TokensPrompt

        check_score_inputs(prompts, continuations)
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        rows, counts = [], []
        for prompt, continuation in zip(prompts, continuations):
            head, tail = continuation_ids(encode, prompt, continuation)
            rows.append(TokensPrompt(prompt_token_ids=head + tail))
            counts.append(len(tail))
        results = self.llm.generate(rows, VSampling(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
        out = []
        for row, result, n in zip(rows, results, counts):
            ids = row["prompt_token_ids"]
            steps = result.prompt_logprobs[len(ids) - n:]
            out.append(sum(step[token].logprob for step, token in zip(steps, ids[len(ids) - n:])))
        return out
