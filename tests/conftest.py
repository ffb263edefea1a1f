import sys
from pathlib import Path

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
