import json
import subprocess
import sys

import pytest

from pipeline import ConfigError, load_config
from pipeline.config import config_groups
from pipeline.factory import make_critic, make_env, make_problem_source
from tests.conftest import ROOT

CRITIC_CHOICES = "model, model_checks, model_likelihood, none, oracle, random, self, self_reflection"


def test_groups_are_swappable_by_one_word():
    cfg = load_config(["critic=none", "problems=gsm8k"])
    assert cfg.critic.name == "none" and cfg.problems.name == "gsm8k"
    assert {"critic", "problems", "env", "self_improve"} <= set(config_groups())
    default, plain = load_config([]).self_improve, load_config(["self_improve=plain", "self_improve.iterations=5"]).self_improve
    assert default.actor == "checkpoints/tiny-actor-easy" and default.curriculum and default.replay > 0
    assert plain.actor is None and not plain.curriculum and plain.replay == 0 and plain.iterations == 5
    # each experiment's fine-tune size comes with its group; the command line still wins
    assert (default.replay, default.sft_steps, plain.sft_steps) == (2048, 180, 60)
    assert load_config(["self_improve.sft_steps=7"]).self_improve.sft_steps == 7


def test_the_words_users_say_pick_algorithms_critics_backends_sources_and_recipes():
    assert load_config(["algo=grpo"]).self_improve.algorithms == ["grpo"]
    assert load_config(["algo=[rft,critique_loop,grpo_critic]"]).self_improve.algorithms == ["rft", "critique", "grpo_critic"]
    with pytest.raises(ConfigError, match=r"unknown choice 'ppo' for algo; valid: critique, critique_loop, grpo"):
        load_config(["algo=ppo"])
    cfg = load_config(["critic=model", "actor.backend=openai", "problems=math"])
    assert (cfg.critic.name, cfg.actor.backend, cfg.problems.name) == ("model", "openai", "math")
    cfg = load_config(["recipe=cpu_smollm2", "problems=math", "algo=critique_loop"])
    assert cfg.run_dir == "runs/cpu_smollm2" and "self_talk" in cfg.stages and cfg.problems.name == "math"
    assert cfg.self_improve.algorithms == ["critique"]


def test_a_deeper_critic_is_one_key_of_the_critic_recipe(tmp_path, capsys):
    assert load_config([]).critic_training.recipe.expand_layers == 0
    assert load_config(["critic_training.recipe.expand_layers=4"]).critic_training.recipe.expand_layers == 4
    # a count that does not split the starting model's layers is a config error before any data is read (there is
    # none in this run folder), naming the key and the counts that would do
    import train

    for init, layers in (("actor", "the layers of"), ("scratch", "critic_training.recipe.model.num_hidden_layers")):
        assert train.main(["stages=[critic_training]", f"critic_training.init={init}", "actor.model=checkpoints/tiny-actor",
                           "critic_training.recipe.expand_layers=3", f"run_dir={tmp_path / init}"]) == 2
        err = capsys.readouterr().err
        assert "critic_training.recipe.expand_layers=3 must divide" in err and layers in err
        assert "(4) into equal groups (one of 1, 2, 4)" in err
    assert train.main(["stages=[critic_training]", "critic_training.init=actor", "actor.model=checkpoints/tiny-actor",
                       "critic_training.recipe.expand_layers=2", f"run_dir={tmp_path / 'ok'}"]) == 2
    assert "no critique data" in capsys.readouterr().err  # a dividing count gets past the check


def test_unknown_choice_lists_valid_ones():
    with pytest.raises(ConfigError, match=f"unknown choice 'bad' for critic; valid: {CRITIC_CHOICES}"):
        load_config(["critic=bad"])


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown config key 'env.max_turn'.*valid keys there: .*max_turns"):
        load_config(["env.max_turn=3"])
    with pytest.raises(ConfigError, match=r"'foo'.*valid keys there: .*seed"):
        load_config(["foo=1"])
    with pytest.raises(ConfigError, match="not supported"):
        load_config(["+foo=1"])


def test_recipe_dicts_are_checked_against_their_config_class():
    """Recipe files and ``--set`` overrides of the standalone trainers and the Ray spec go through one check."""
    from agents.tiny import TinyModelConfig
    from autocritique.pipeline import AutoCritiqueConfig
    from rollout.ray_pool import RayConfig
    from trainers.critic_sft import CriticSFTConfig
    from trainers.sft import ActorSFTConfig

    actor = ActorSFTConfig.from_dict({"max_steps": 7, "model": {"hidden_size": 64}})
    assert actor.max_steps == 7 and actor.model == TinyModelConfig(hidden_size=64)
    assert CriticSFTConfig.from_dict({}).model == TinyModelConfig()
    assert AutoCritiqueConfig.from_dict({"kinds": ["calculation"]}).kinds == ("calculation",)
    for cls, what in ((ActorSFTConfig, "ActorSFTConfig"), (CriticSFTConfig, "CriticSFTConfig"),
                      (RayConfig, "ray"), (AutoCritiqueConfig, "autocritique")):
        with pytest.raises(ValueError, match=rf"unknown {what} key\(s\) \['bogus'\]; valid: \['"):
            cls.from_dict({"bogus": 1})


def test_ppo_settings_are_checked():
    with pytest.raises(ConfigError, match="self_improve.ppo.envs must be >= 1, got 0"):
        load_config(["self_improve.ppo.envs=0"])


def test_required_keys_are_named():
    with pytest.raises(ConfigError, match=r"required key\(s\) not set: actor.model"):
        load_config(["actor=hf"])
    assert load_config(["actor=hf", "actor.model=some/model"]).actor.number_format == "plain"


def test_factories_build_what_the_config_names():
    cfg = load_config(["env.max_refinements=3", "problems.size=10"])
    env = make_env(cfg)
    assert env.config.max_refinements == 3 and len(env.problems) == 10 and env.critic.name == "oracle"
    with pytest.raises(ConfigError, match="unknown critic 'x'; valid: none, oracle, random, self, self_reflection, model"):
        make_critic({"name": "x"})
    with pytest.raises(ConfigError, match="problem source 'synthetic'"):
        make_problem_source({"name": "synthetic", "bogus": 1})


def _train(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_calibrate_critic_sweeps_the_bound_on_training_problems(tmp_path):
    run_dir = tmp_path / "run"
    stages = "stages=[warmup,critic_training,calibrate_critic]"
    proc = _train(f"run_dir={run_dir}", stages, "critic_training.init=shipped", "calibrate_critic.levels=[3]",
                  "calibrate_critic.problems_per_level=4", "calibrate_critic.accept_probabilities=[0.01,0.9]",
                  cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((run_dir / "results" / "calibrate_critic.json").read_text())["metrics"]
    rows = metrics["rows"]
    assert set(rows) == {"own verdicts", "accept_probability=0.01", "accept_probability=0.9"}
    assert all(r["n"] == 8 for r in rows.values())  # 4 natural + 4 greedy solutions
    assert metrics["best_accept_probability"] in (0.01, 0.9)
    # a looser bound lets more lines pass unjudged, so it never flags a solution the stricter one passes
    loose, strict = rows["accept_probability=0.01"], rows["accept_probability=0.9"]
    assert loose["caught"] + loose["false_alarms"] <= strict["caught"] + strict["false_alarms"]
    proc = _train(f"run_dir={run_dir}", stages, "calibrate_critic.accept_probabilities=[0]", cwd=ROOT)
    assert proc.returncode == 2 and "accept_probabilities must be in (0, 1]" in proc.stderr


def test_train_py_reports_config_errors(tmp_path, capsys):
    import train  # its main(), in this process: the same path as the command, without a second interpreter

    assert train.main(["critic=nope"]) == 2
    assert f"valid: {CRITIC_CHOICES}" in capsys.readouterr().err
    assert train.main(["stages=[warp]", f"run_dir={tmp_path}"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_trained_critic_variants_share_one_loaded_model():
    from pipeline.checkpoints import SHIPPED_CRITIC
    from pipeline.factory import trained_critics

    cfg = load_config(["critic=model", f"critic.model={SHIPPED_CRITIC}", "critic.accept_probability=0.3"])
    critics = trained_critics(cfg, ["model", "model_checks", "model_likelihood"])
    assert [c.verdicts for c in critics.values()] == ["model", "checks", "likelihood"]
    assert len({id(c.backend) for c in critics.values()}) == 1
    assert {c.accept_probability for c in critics.values()} == {0.3}
    assert critics["model_likelihood"].variant(accept_probability=0.02).accept_probability == 0.02
    with pytest.raises(ConfigError, match="unknown critic 'x'"):
        trained_critics(cfg, ["x"])
