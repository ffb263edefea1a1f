"""The shared data types and role protocols: the bottom layer every other package imports from.

Nothing here imports another project package, so everything can import this (docs/architecture.md).
"""

from core.local import keep_traffic_local

keep_traffic_local()  # before any library that sends telemetry is imported

from core.critique import Critique, CritiqueParseError, StepJudgement  # noqa: E402
from core.episode import Attempt, EpisodeRecord, Generation  # noqa: E402
from core.problem import ANSWER_PREFIX, ListProblemSource, Problem, ProblemSource, answer_line  # noqa: E402
from core.protocols import Algorithm, Critic, IterationSummary, LMBackend, Policy, RolloutRunner  # noqa: E402
from core.registry import Registry, RegistryError  # noqa: E402
from core.sampling import Completion, Prompt, SamplingParams  # noqa: E402
from core.verification import VerificationResult  # noqa: E402

__all__ = [
    "ANSWER_PREFIX",
    "Algorithm",
    "Attempt",
    "Completion",
    "Critic",
    "Critique",
    "CritiqueParseError",
    "EpisodeRecord",
    "Generation",
    "IterationSummary",
    "LMBackend",
    "ListProblemSource",
    "Policy",
    "Problem",
    "ProblemSource",
    "Prompt",
    "Registry",
    "RegistryError",
    "RolloutRunner",
    "SamplingParams",
    "StepJudgement",
    "VerificationResult",
    "answer_line",
]
