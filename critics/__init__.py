"""Critics: one protocol, one critique format, and the critics that implement them."""

from critics.base import BaseCritic, Critic, NullCritic
from critics.critique import Critique, CritiqueParseError, StepJudgement
from critics.oracle import OracleCritic

__all__ = ["BaseCritic", "Critic", "Critique", "CritiqueParseError", "NullCritic", "OracleCritic", "StepJudgement"]
