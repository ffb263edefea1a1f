"""Actors and the language-model backends they run on."""

from agents.scripted import ScriptedActor

__all__ = ["ScriptedActor"]
