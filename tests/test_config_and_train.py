import json
import subprocess
import sys

import pytest

from pipeline import ConfigError, load_config
from pipeline.config import config_groups
from pipeline.factory import make_critic, make_env, make_problem_source
from tests.conftest import ROOT


def test_groups_are_swappable_by_one_word():
    cfg = load_config(["critic=none", "problems=gsm8k"])
    assert cfg.critic.name == "none" and cfg.problems.name == "gsm8k"
    assert {"critic", "problems", "env"} <= set(config_groups())


def test_unknown_choice_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown choice 'bad' for critic; valid: none, oracle, self"):
        load_config(["critic=bad"])


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'env.max_turn'.*valid keys there: .*max_turns"):
        load_config(["env.max_turn=3"])
    with pytest.raises(ConfigError, match=r"'foo'.*valid keys there: .*seed"):
        load_config(["foo=1"])
    with pytest.raises(ConfigError, match="not supported"):
        load_config(["+foo=1"])


def test_required_keys_are_named():
    with pytest.raises(ConfigError, match=r"required key\(s\) not set: actor.model"):
        load_config(["actor=hf"])
    assert load_config(["actor=hf", "actor.model=some/model"]).actor.number_format == "plain"


def test_factories_build_what_the_config_names():
    cfg = load_config(["env.max_refinements=3", "problems.size=10"])
    env = make_env(cfg)
    assert env.config.max_refinements == 3 and len(env.problems) == 10 and env.critic.name == "oracle"
    with pytest.raises(ConfigError, match="unknown critic 'x'; valid: none, oracle, self"):
        make_critic({"name": "x"})
    with pytest.raises(ConfigError, match="problem source 'synthetic'"):
        make_problem_source({"name": "synthetic", "bogus": 1})


def _train(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_train_py_runs_the_default_stages(tmp_path):
    run_dir = tmp_path / "run"
    proc = _train(f"run_dir={run_dir}", "env_check.episodes=40", "eval.problems_per_level=5", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "critic  : Step 2 is wrong" in proc.stdout
    check = json.loads((run_dir / "stages" / "env_check.json").read_text())
    assert check["check_env"] == "passed"
    assert check["correct_solutions"]["accuracy"] == 1.0
    assert check["one_error_no_critic"]["accuracy"] == 0.0
    assert check["one_error_with_oracle"]["accuracy"] >= 0.95
    assert json.loads((run_dir / "config.json").read_text())["critic"]["name"] == "oracle"
    assert (run_dir / "actor" / "model.safetensors").exists()  # started from the shipped checkpoint
    accuracy = json.loads((run_dir / "results" / "eval_actor.json").read_text())["metrics"]["accuracy"]
    assert accuracy["by_difficulty"]["1"]["accuracy"] >= 0.8
    with_oracle = json.loads((run_dir / "results" / "eval_actor.json").read_text())["metrics"]["with_critic"]
    assert with_oracle["overall"]["accuracy"] >= accuracy["overall"]["accuracy"]
    assert "Actor accuracy by difficulty" in proc.stdout


def test_train_py_reports_config_errors(tmp_path):
    proc = _train("critic=nope", cwd=tmp_path)
    assert proc.returncode == 2 and "valid: none, oracle, self" in proc.stderr
    proc = _train("stages=[warp]", f"run_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown stage" in proc.stderr
