"""The protocols of the roles: one per role, so any implementation plugs into every stage.

* :class:`LMBackend` -- text or token ids in, completions (and log-probabilities) out;
* :class:`Critic` -- step-level feedback on a solution;
* :class:`Policy` -- what the rollout loop calls for actions (a model actor, a scripted one, a replay);
* :class:`RolloutRunner` -- runs episodes for trainers, in-process or on Ray workers;
* :class:`Algorithm` -- a self-improvement algorithm: iterations that each return an :class:`IterationSummary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from core.critique import Critique
from core.episode import EpisodeRecord
from core.problem import Problem
from core.sampling import Completion, Prompt, SamplingParams

__all__ = ["Algorithm", "Critic", "IterationSummary", "LMBackend", "Policy", "RolloutRunner"]


@runtime_checkable
class LMBackend(Protocol):
    """Batched generation: ``generate(prompts, sampling)[i]`` holds ``sampling.n`` completions of prompt ``i``;
    ``score(prompts, continuations)[i]`` is the log-probability of continuation ``i`` (text) after prompt ``i``
    (the sum over its tokens), what a critic needs to ask how likely it finds a step someone else wrote."""

    name: str
    tokenizer: Any  # a transformers tokenizer, or None for a backend that only speaks text

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingParams) -> list[list[Completion]]: ...

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]: ...


@runtime_checkable
class Critic(Protocol):
    """Step-level feedback on a solution; ``steps`` are the solution's lines so far (answer line last)."""

    name: str

    def critique(self, problem: Problem, steps: Sequence[str]) -> Critique: ...

    def critique_batch(self, problems: Sequence[Problem], steps: Sequence[Sequence[str]]) -> list[Critique]: ...


@runtime_checkable
class Policy(Protocol):
    """Observation and info (``info["record"]`` is the episode so far) in, an action out. A policy with
    ``act_batch(observations, infos)`` is served one call for every live episode by the rollout loop."""

    def act(self, observation: dict[str, str], info: dict[str, Any]) -> Any: ...


@runtime_checkable
class RolloutRunner(Protocol):
    """Runs one episode per problem with the runner's actor and a named critic; the in-process runner and the
    Ray pool both implement it, so a trainer never knows which one it has."""

    last_restarts: list[str]

    def rollout(self, problems: Sequence[Problem], seed: int = 0, sampling: SamplingParams | None = None,
                env: dict | None = None, first: dict | None = None, critic: str = "none") -> list[EpisodeRecord]: ...

    def critic(self, name: str) -> Critic: ...

    def set_weights(self, model: Any) -> None: ...

    def shutdown(self) -> None: ...


@dataclass
class IterationSummary:
    """What one self-improvement iteration measured (iteration 0: the starting actor, no training fields)."""

    iteration: int
    heldout: dict[str, Any]          # {"overall": accuracy, "by_difficulty": {level: accuracy}}
    seconds: float
    problems: int | None = None
    generations: int | None = None   # actor generations spent
    budget: int | None = None
    exploration: float | None = None  # share of training problems with a verified-correct trajectory
    diversity: float | None = None    # distinct correct solutions per training problem
    tokens: int | None = None
    restarts: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # what only one algorithm measures

    def to_dict(self) -> dict[str, Any]:
        """The flat form stored in state.json and the results file (``extra`` merged in, unset fields dropped)."""
        d = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        if self.iteration == 0:
            d.pop("restarts")
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IterationSummary:
        known = set(cls.__dataclass_fields__) - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in known}, extra={k: v for k, v in d.items() if k not in known})


@runtime_checkable
class Algorithm(Protocol):
    """A self-improvement algorithm over a :class:`RolloutRunner`: ``run`` does the configured iterations
    (resuming from the last saved one when asked) and returns every iteration's summary, iteration 0 first."""

    name: str

    def run(self, resume: bool = False) -> list[IterationSummary]: ...
