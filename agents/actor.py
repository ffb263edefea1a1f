"""``Actor``: environment observations -> prompts -> one batched ``generate`` -> actions, with exact token ids.

Token ids are never re-derived from text that the model itself produced. Each episode keeps the token ids of the
solution lines it sampled; when the critic cuts the solution back, the next prompt is the (re-encoded) header
with the feedback followed by the kept lines' *sampled* ids. So a trainer can train on ``prompt_ids +
completion_ids`` of every generation and be training on exactly what the actor saw and sampled. Where that is
impossible (a line the environment truncated, a newline inside a token, a text-only backend) the generation is
marked ``retokenized``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from agents.backends import BACKENDS, load_backend
from agents.prompts import ChatTemplate, PromptTemplate, template_for
from core.episode import EpisodeRecord, Generation
from core.protocols import LMBackend
from core.sampling import Completion, SamplingParams

__all__ = ["Actor", "ActorConfig", "SampledLine", "backend_template", "build_actor", "episode_header",
           "split_completion_lines"]


@dataclass
class SampledLine:
    text: str  # canonical text (numbers decoded, stripped), as the environment stores it
    ids: list[int]  # the sampled ids of the line, its newline included
    exact: bool = True  # False: the line boundary fell inside a token


def _decoding_memo(tokenizer: Any) -> tuple[frozenset[int], dict[int, str]]:
    """The tokenizer's special ids and each token's text decoded alone, filled as tokens are seen (a rollout
    splits every completion token; the library recomputes ``all_special_ids`` on each call)."""
    try:
        memo = _MEMO.get(tokenizer)
    except TypeError:  # not weak-referenceable: no memo
        return frozenset(tokenizer.all_special_ids), {}
    if memo is None:
        memo = _MEMO[tokenizer] = (frozenset(tokenizer.all_special_ids), {})
    return memo


_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def split_completion_lines(tokenizer: Any, ids: Sequence[int], template: PromptTemplate) -> list[SampledLine]:
    """Cut a completion's ids at newlines; blank lines are dropped, as the environment drops them."""
    special, pieces = _decoding_memo(tokenizer)
    lines: list[SampledLine] = []
    current: list[int] = []
    text = ""
    exact = True

    def close() -> None:
        canonical = template.decode(text).strip()
        if canonical:
            lines.append(SampledLine(canonical, list(current), exact))

    for token in ids:
        if token in special:
            continue
        piece = pieces.get(token)
        if piece is None:
            piece = pieces[token] = tokenizer.decode([token], skip_special_tokens=True)
        current.append(token)
        text += piece
        if "\n" in piece:
            head, _, tail = text.rpartition("\n")
            exact = exact and not tail
            text = head
            close()
            current, text, exact = [], tail, not tail
    if current:
        close()
    return lines


def episode_header(template: PromptTemplate | ChatTemplate, record: EpisodeRecord, feedback: str) -> str:
    """The prompt's opening for an episode's next action: the question and, after a critique, its feedback (chat
    templates also quote the attempt it answers); the kept solution lines follow it."""
    last = record.attempts[-1] if feedback and record.attempts else None
    return template.header(record.problem.question, feedback, previous=last.steps if last else None,
                           critique=last.critique if last else None)


class Actor:
    """Writes solutions (``action_unit="solution"``) or one step per call (``"step"``) with any LM backend."""

    def __init__(self, backend: LMBackend, template: PromptTemplate | ChatTemplate | None = None,
                 sampling: SamplingParams | None = None, action_unit: str = "solution",
                 refine_sampling: SamplingParams | None = None):
        """``refine_sampling``: how to sample an action that answers the critic's feedback (default: as any
        other). A greedy actor refining greedily rewrites the step it was told is wrong the same way each round;
        sampling the refinement lets a later round try something else."""
        if action_unit not in ("solution", "step"):
            raise ValueError(f"action_unit must be 'solution' or 'step', got {action_unit!r}")
        self.backend = backend
        self.template = template or PromptTemplate()
        self.action_unit = action_unit
        self.sampling = self._for_unit(sampling or SamplingParams())
        self.refine_sampling = self._for_unit(refine_sampling) if refine_sampling else self.sampling
        self._lines: dict[int, tuple[EpisodeRecord, list[SampledLine]]] = {}

    def act(self, observation: dict[str, str], info: dict[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: Sequence[dict[str, str]], infos: Sequence[dict[str, Any]]) -> list[str]:
        """One ``generate`` call for every live episode; returns their actions (canonical text)."""
        self._forget_finished()
        records = [info["record"] for info in infos]
        prompts, flags = [], []
        for observation, record in zip(observations, records):
            prompt, retokenized = self._prompt(record, observation.get("feedback", ""))
            prompts.append(prompt)
            flags.append(retokenized)
        refining = [bool(observation.get("feedback")) for observation in observations]
        groups = [(self.sampling, list(range(len(prompts))))]
        if self.refine_sampling != self.sampling:  # one generate call per way of sampling
            groups = [(self.sampling, [i for i, r in enumerate(refining) if not r]),
                      (self.refine_sampling, [i for i, r in enumerate(refining) if r])]
        completions: list[Completion] = [None] * len(prompts)  # type: ignore[list-item]
        for sampling, rows in groups:
            if rows:
                for i, row in zip(rows, self.backend.generate([prompts[i] for i in rows], replace(sampling, n=1))):
                    completions[i] = row[0]
        return [self._take(record, completion, retokenized)
                for record, completion, retokenized in zip(records, completions, flags)]

    # -- helpers ---------------------------------------------------------------------------------------------

    def _for_unit(self, sampling: SamplingParams) -> SamplingParams:
        if self.action_unit == "step" and "\n" not in sampling.stop:
            sampling = replace(sampling, stop=(*sampling.stop, "\n"))
        return sampling

    def _forget_finished(self) -> None:
        for key in [k for k, (record, _) in self._lines.items() if record.done]:
            del self._lines[key]

    def _kept_lines(self, record: EpisodeRecord) -> tuple[list[SampledLine], bool]:
        """The sampled lines the environment kept, re-encoding any it changed."""
        sampled = self._lines.get(id(record), (record, []))[1]
        kept, retokenized = [], False
        for i, step in enumerate(record.steps):
            if i < len(sampled) and sampled[i].text == step and sampled[i].exact:
                kept.append(sampled[i])
            else:
                kept.append(SampledLine(step, self._encode(self.template.solution_lines([step])), False))
                retokenized = True
        return kept, retokenized

    def _prompt(self, record: EpisodeRecord, feedback: str) -> tuple[str | list[int], bool]:
        header = episode_header(self.template, record, feedback)
        kept, retokenized = self._kept_lines(record)
        self._lines[id(record)] = (record, kept)
        if self.backend.tokenizer is None:  # a text-only backend: the server tokenises
            return header + self.template.solution_lines([line.text for line in kept]), True
        ids = self._encode(header)
        for line in kept:
            ids.extend(line.ids)
        return ids, retokenized

    def _encode(self, text: str) -> list[int]:
        return self.backend.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _take(self, record: EpisodeRecord, completion: Completion, retokenized: bool) -> str:
        record.generations.append(Generation(list(completion.prompt_token_ids), list(completion.token_ids),
                                             completion.logprobs, retokenized))
        if self.backend.tokenizer is not None:
            new_lines = split_completion_lines(self.backend.tokenizer, completion.token_ids, self.template)
            self._lines[id(record)][1].extend(new_lines)
        return self.template.decode(completion.text)


@dataclass
class ActorConfig:
    """The actor's model, backend and sampling (the ``actor:`` config group's model keys)."""

    backend: str = "hf"                # a name in agents.backends.BACKENDS: hf | openai | vllm
    model: str | None = None           # a local folder or hub id (default: the run's warm-up checkpoint)
    number_format: str = "reversed"    # how numbers are written in the model's text (agents/codec.py)
    template: str = "auto"             # auto: the tokenizer's chat template if it has one | chat | plain
    base_url: str = "http://127.0.0.1:8000/v1"   # backend=openai
    served_model: str | None = None    # the model name the server knows (default: the checkpoint path)
    max_new_tokens: int = 160
    temperature: float = 0.0
    top_p: float = 1.0
    batch_size: int = 64
    threads: int = 2
    engine: str = "auto"               # hf: slots (continuous batching) | generate (model.generate) | auto


def build_actor(cfg: ActorConfig, checkpoint: str | None = None, seed: int = 0) -> Actor:
    """An :class:`Actor` over the backend ``cfg`` names, loading ``cfg.model`` or else ``checkpoint``."""
    BACKENDS[cfg.backend]  # an unknown backend fails here, naming the valid ones
    model = cfg.model or checkpoint
    if not model:
        raise ValueError("actor: no model to load; set actor.model or run the warmup stage")
    backend = load_backend(cfg.backend, str(model), batch_size=cfg.batch_size, threads=cfg.threads,
                           base_url=cfg.base_url, served_model=cfg.served_model, engine=cfg.engine)
    sampling = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                              seed=seed)
    return Actor(backend, backend_template(backend, cfg.template, cfg.number_format), sampling, action_unit="solution")


def backend_template(backend: LMBackend, kind: str = "auto", number_format: str = "plain") -> PromptTemplate | ChatTemplate:
    """The prompt template for a backend's model: a served model's chat template is read from its local
    tokenizer (``model`` a local folder), as the prompt text is rendered here."""
    return template_for(getattr(backend, "local_tokenizer", None) or backend.tokenizer, kind, number_format)
