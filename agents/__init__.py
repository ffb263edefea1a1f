"""Actors and the language-model backends they run on."""

from agents.actor import Actor, ActorConfig, build_actor
from agents.backends import BACKENDS, Completion, LMBackend, SamplingParams, load_backend, make_backend
from agents.codec import NumberCodec
from agents.prompts import PromptTemplate

__all__ = ["BACKENDS", "Actor", "ActorConfig", "Completion", "LMBackend", "NumberCodec", "PromptTemplate", "SamplingParams",
           "build_actor", "load_backend", "make_backend"]
