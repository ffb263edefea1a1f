"""Problem sources and the math-reasoning Gymnasium environment."""

import gymnasium

from core.episode import EpisodeRecord
from core.problem import ANSWER_PREFIX, ListProblemSource, Problem, ProblemSource, answer_line
from envs.datasets import DatasetFormatError, load_gsm8k, load_math
from envs.math_env import EnvConfig, MathReasoningEnv, feedback_summary, run_episode
from envs.scripted import ScriptedActor
from envs.synthetic import ERROR_KINDS, CorruptedSolution, SyntheticArithmetic, corrupt_solution

ENV_ID = "critique_gym/MathReasoning-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="envs.math_env:MathReasoningEnv")

__all__ = [
    "ANSWER_PREFIX",
    "ENV_ID",
    "ERROR_KINDS",
    "CorruptedSolution",
    "DatasetFormatError",
    "EnvConfig",
    "EpisodeRecord",
    "ListProblemSource",
    "MathReasoningEnv",
    "Problem",
    "ProblemSource",
    "ScriptedActor",
    "SyntheticArithmetic",
    "answer_line",
    "corrupt_solution",
    "feedback_summary",
    "load_gsm8k",
    "load_math",
    "run_episode",
]
