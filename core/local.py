"""Keep the project's traffic on this machine: the libraries it runs send telemetry unless told not to.

They read their switches from the environment when they are first imported, so this runs when ``core`` is
imported (every project package imports it before transformers, TRL or the hub client). A user's own setting
wins (``setdefault``). wandb's and Ray's switches are set where they start (evaluation/tracking.py,
rollout/ray_pool.py); model and dataset downloads a user asks for are untouched.
"""

from __future__ import annotations

import os

__all__ = ["TELEMETRY_OFF", "keep_traffic_local"]

TELEMETRY_OFF = {
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub: usage telemetry sent by transformers/TRL trainers
}


def keep_traffic_local() -> None:
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
