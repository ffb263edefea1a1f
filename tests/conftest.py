import os
import sys
from pathlib import Path

# The tests run one worker per core (pytest-xdist), and every torch process uses two threads, so the cores are
# oversubscribed. OpenMP threads that spin while they wait for work then starve the other process: a small
# eval_critic run took 286 s beside a second one, 69 s with passive waiting (43 s alone). Set before torch loads,
# inherited by every train.py the tests start.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from envs.datasets import default_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = default_data_dir()
    assert (path / "gsm8k" / "test.jsonl").exists(), (
        f"the GSM8K/MATH-500 files are expected under {path} (set $CRITIQUE_GYM_DATA to their folder)")
    return path
