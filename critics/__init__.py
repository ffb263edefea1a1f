"""Critics: one protocol, one critique format, and the critics that implement them."""

from critics.base import BaseCritic, Critic, NullCritic, RandomStepCritic
from critics.critique import Critique, CritiqueParseError, StepJudgement
from critics.model_critic import ModelCritic
from critics.oracle import OracleCritic

__all__ = ["BaseCritic", "Critic", "Critique", "CritiqueParseError", "ModelCritic", "NullCritic", "OracleCritic",
           "RandomStepCritic", "StepJudgement"]
