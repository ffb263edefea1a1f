"""The shared data types and role protocols: the bottom layer every other package imports from.

Nothing here imports another project package, so everything can import this (docs/architecture.md).
"""

from core.critique import Critique, CritiqueParseError, StepJudgement
from core.episode import Attempt, EpisodeRecord, Generation
from core.problem import ANSWER_PREFIX, ListProblemSource, Problem, ProblemSource, answer_line
from core.protocols import Algorithm, Critic, IterationSummary, LMBackend, Policy, RolloutRunner
from core.registry import Registry, RegistryError
from core.sampling import Completion, Prompt, SamplingParams
from core.verification import VerificationResult

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
