"""``OpenAIBackend``: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ``transformers serve``, hosted APIs).

Requests go out concurrently (one per prompt and sample), with retries and exponential backoff on 429 and 5xx
and a timeout per request. The legacy ``/v1/completions`` endpoint is used (``chat=False``) so the prompt text
is exactly the template's; ``chat=True`` sends it as one user message to ``/v1/chat/completions`` instead.
Token ids come back only from servers that return them; otherwise, given a local ``tokenizer``, the text is
encoded locally and the generation is marked ``retokenized`` by the actor.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from agents.backends.base import check_score_inputs, truncate_at_stop
from core.sampling import Completion, Prompt, SamplingParams

__all__ = ["OpenAIBackend", "BackendError"]

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class BackendError(RuntimeError):
    """A server answered with an error that retries did not clear; the message carries its status and body."""


class OpenAIBackend:
    name = "openai"

    def __init__(self, base_url: str = "http://127.0.0.1:8000/v1", model: str = "", api_key: str | None = None,
                 tokenizer: Any = None, chat: bool = False, concurrency: int = 16, timeout: float = 120.0,
                 max_retries: int = 5, backoff: float = 0.5):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer = None  # the actor sends text: the server tokenises
        self.local_tokenizer = tokenizer
        self.chat = chat
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[list[Completion]]:
        texts = [p if isinstance(p, str) else self._decode_prompt(p) for p in prompts]
        jobs = [(i, k) for i in range(len(texts)) for k in range(sampling.n)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            done = list(pool.map(lambda job: self._one(texts[job[0]], sampling, job[1]), jobs))
        out: list[list[Completion]] = [[] for _ in texts]
        for (i, _), completion in zip(jobs, done):
            out[i].append(completion)
        return out

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]:
        """The server echoes the prompt with its log-probabilities (``/v1/completions``, ``echo``); the tokens from
        the continuation's first character on are summed."""
        if self.chat:
            raise BackendError("score needs the completions endpoint (chat=False): chat servers do not echo prompts")
        check_score_inputs(prompts, continuations)
        texts = [p if isinstance(p, str) else self._decode_prompt(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda pair: self._score_one(*pair), zip(texts, continuations)))

    def _score_one(self, prompt: str, continuation: str) -> float:
        url = f"{self.base_url}/completions"
        body = {"model": self.model, "prompt": prompt + continuation, "max_tokens": 1, "temperature": 0.0,
                "echo": True, "logprobs": 0}
        data = self._post(url, body)
        try:
            lp = data["choices"][0]["logprobs"]
            offsets, values = lp["text_offset"], lp["token_logprobs"]
        except (KeyError, IndexError, TypeError) as err:
            raise BackendError(f"{url}: no echoed log-probabilities in the response: {str(data)[:300]}") from err
        end = len(prompt) + len(continuation)  # the echoed text ends here; what follows was generated
        picked = [v for offset, v in zip(offsets, values) if len(prompt) <= offset < end and v is not None]
        if not picked:
            raise BackendError(f"{url}: the echoed tokens do not cover the continuation {continuation!r}")
        return float(sum(picked))

    def _decode_prompt(self, ids: Sequence[int]) -> str:
        if self.local_tokenizer is None:
            raise ValueError("OpenAIBackend got token ids but has no tokenizer to turn them into text")
        return self.local_tokenizer.decode(list(ids))

    def _payload(self, prompt: str, sampling: SamplingParams, sample_index: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": sampling.max_new_tokens,
                                "temperature": sampling.temperature, "top_p": sampling.top_p}
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed + sample_index
        if sampling.logprobs:
            body["logprobs"] = 1 if not self.chat else True
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _one(self, prompt: str, sampling: SamplingParams, sample_index: int) -> Completion:
        url = f"{self.base_url}/{'chat/completions' if self.chat else 'completions'}"
        data = self._post(url, self._payload(prompt, sampling, sample_index))
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.chat else choice["text"]
        except (KeyError, IndexError, TypeError) as err:
            raise BackendError(f"{url}: unexpected response shape: {str(data)[:300]}") from err
        text = text or ""
        finish = choice.get("finish_reason") or "stop"
        if sampling.stop:  # servers differ in whether they keep the stop string; the project keeps it
            text = truncate_at_stop(text, sampling.stop)[0]
        ids = choice.get("token_ids") or self._encode(text)
        prompt_ids = data.get("prompt_token_ids") or choice.get("prompt_token_ids") or self._encode(prompt)
        return Completion(text, list(ids), list(prompt_ids), self._logprobs(choice), "length" if finish == "length" else "stop")

    def _encode(self, text: str) -> list[int]:
        if self.local_tokenizer is None:
            return []
        return self.local_tokenizer(text, add_special_tokens=False)["input_ids"]

    @staticmethod
    def _logprobs(choice: dict[str, Any]) -> list[float] | None:
        lp = choice.get("logprobs")
        if not lp:
            return None
        if isinstance(lp, dict) and "token_logprobs" in lp:
            return [float(x) for x in lp["token_logprobs"] if x is not None]
        if isinstance(lp, dict) and "content" in lp:
            return [float(item["logprob"]) for item in lp["content"] or []]
        return None

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.post(url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                last = f"{type(err).__name__}: {err}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError as err:
                        raise BackendError(f"{url}: response is not JSON: {response.text[:300]}") from err
                last = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{url}: {last}")
            if attempt < self.max_retries:
                time.sleep(self.backoff * 2**attempt * (1 + random.random() * 0.25))
        raise BackendError(f"{url}: gave up after {self.max_retries + 1} attempts; last error: {last}")
