"""Actors and the language-model backends they run on."""

from agents.actor import Actor
from agents.backends import Completion, LMBackend, SamplingParams, make_backend
from agents.codec import NumberCodec
from agents.prompts import PromptTemplate
from agents.scripted import ScriptedActor

__all__ = ["Actor", "Completion", "LMBackend", "NumberCodec", "PromptTemplate", "SamplingParams", "ScriptedActor",
           "make_backend"]
