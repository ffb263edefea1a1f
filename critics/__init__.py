"""Critics: one protocol, one critique format, and the critics that implement them."""

from core.critique import Critique, CritiqueParseError, StepJudgement
from core.protocols import Critic
from critics.base import BaseCritic, NullCritic, RandomStepCritic
from critics.model_critic import ModelCritic
from critics.oracle import OracleCritic

__all__ = ["BaseCritic", "Critic", "Critique", "CritiqueParseError", "ModelCritic", "NullCritic", "OracleCritic",
           "RandomStepCritic", "StepJudgement"]
