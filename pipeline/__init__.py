"""Stage orchestration for ``train.py``: config loading, factories, stages."""

from pipeline.config import ConfigError, load_config
from pipeline.stages import STAGES, run_stages

__all__ = ["STAGES", "ConfigError", "load_config", "run_stages"]
