"""Trainers: supervised fine-tuning of actors and critics (TRL), and the self-improvement algorithms."""
