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


SMALL = [  # every default stage, on small sizes
    "env_check.episodes=40", "eval.problems_per_level=5",
    "autocritique.sampled_problems=24", "autocritique.located_problems=8", "autocritique.typed_problems=8",
    "autocritique.reference_problems=8",
    "critic_training.recipe.train_steps=2", "critic_training.recipe.batch_size=4",
    "eval_critic.problems_per_level=3",
    "test_time.problems_per_level=2", "test_time.levels=[2,6]", "test_time.hard_levels=[6]", "test_time.k_max=2",
    "test_time.budget_k_max=3",
    "test_time.ks=[1,2]", "test_time.max_rounds=1",
    "self_improve.iterations=1", "self_improve.problems_per_iteration=8", "self_improve.samples_per_problem=2",
    "self_improve.sft_steps=2", "self_improve.batch_size=4", "self_improve.eval_problems_per_level=1",
    "self_talk.examples=32", "self_talk.train_steps=2", "self_talk.batch_size=4",
]


def test_train_py_runs_the_default_stages(tmp_path):
    run_dir = tmp_path / "run"
    proc = _train(f"run_dir={run_dir}", *SMALL, cwd=ROOT, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
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
    # AutoMathCritique: the dataset and its stats, the critic, its evaluation table
    stats = json.loads((run_dir / "critique_data" / "stats.json").read_text())
    assert stats["responses"] == {"sampled": 24, "located": 8, "typed": 8, "reference": 8}
    assert len((run_dir / "critique_data" / "critiques.jsonl").read_text().splitlines()) == stats["rows"]
    # the default run trains its critic: the shipped one, continued on this run's critique data
    critic = json.loads((run_dir / "critic" / "recipe.json").read_text())
    assert critic["recipe"]["init"] == "checkpoint" and critic["recipe"]["checkpoint"].endswith("checkpoints/tiny-critic")
    assert critic["data"]["rows"] == stats["rows"] and critic["phases"][0]["train_steps"] == 2
    critics = json.loads((run_dir / "results" / "eval_critic.json").read_text())["metrics"]["scores"]
    assert {"trained critic", "always correct", "random step"} <= set(critics)
    assert critics["always correct"]["natural"]["balanced_accuracy"] == 0.5
    assert "| trained critic |" in (run_dir / "results" / "eval_critic.md").read_text()
    # test-time supervision and self-improvement
    assert (run_dir / "results" / "accuracy_vs_k.png").exists()
    assert set(json.loads((run_dir / "results" / "eval_test_time.json").read_text())["metrics"]["refine"]) == {
        "none", "self", "model", "model_likelihood", "oracle"}
    history = json.loads((run_dir / "results" / "self_improve.json").read_text())["metrics"]["history"]
    assert set(history) == {"critique", "rft"} and all(len(h) == 2 for h in history.values())
    # the default experiment: the easy-levels actor, a curriculum to level 5, warm-up replay in every fine-tune
    assert all(h[1]["levels"] == [4, 5] for h in history.values())
    recipe = json.loads((run_dir / "self_improve" / "rft" / "iter_1" / "model" / "recipe.json").read_text())
    assert recipe["examples"] == history["rft"][1]["kept"] + 512
    # self-talk: transcripts from the run's critique data, a trained model, its rows beside the test-time ones
    talk = json.loads((run_dir / "results" / "self_talk.json").read_text())
    assert talk["metrics"]["data"]["built"] == {"corrected": 16, "correct": 16} and talk["metrics"]["episodes"] == 4
    assert "| actor alone (greedy) |" in talk["tables"]["accuracy"] and "checks" in talk["metrics"]
    assert (run_dir / "self_talk" / "model" / "model.safetensors").exists()
    assert set(talk["metrics"]["data"]["by_source"]) == {"critique_data", "self_improve"}
    # the report names every stage, with its headline table and plots a person reads
    report = (run_dir / "report.md").read_text()
    assert all(f"| {stage} |" in report and f"## {stage}" in report for stage in ("eval_actor", "eval_critic",
                                                                                  "eval_test_time", "self_improve",
                                                                                  "self_talk"))
    assert all(f"| {stage} |" in report for stage in json.loads((run_dir / "config.json").read_text())["stages"])
    assert "## What the numbers say" in report and "The actor solves" in report and "Self-improvement" in report
    for png in ("accuracy_vs_tokens", "self_improve", "critic_confusion", "accuracy_by_difficulty"):
        assert f"results/{png}.png" in report and (run_dir / "results" / f"{png}.png").stat().st_size > 1000
    assert "stage times:" in proc.stdout
    page = (run_dir / "report.html").read_text()
    assert "<table>" in page and '<img src="results/self_improve.png"' in page and "<h2>What the numbers say</h2>" in page
    # W&B, offline: one run per stage, the results' tables, the datasets and checkpoints as artifacts
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == len(json.loads((run_dir / "config.json").read_text())["stages"])
    tables = {str(p.relative_to(r / "files" / "media" / "table")) for r in runs
              for p in (r / "files" / "media" / "table").rglob("*.table.json")}
    assert {t.split("/")[0] for t in tables} == {"tables", "episodes"}, tables
    assert any(t.startswith("tables/heldout") for t in tables) and any(t.startswith("episodes/self_talk") for t in tables)
    # episodes one can click through: the critics' verdicts per solution, each self-improvement iteration's rollouts
    for prefix in ("episodes/trained critic/natural", "episodes/critique/iter_1/explore", "episodes/rft/iter_1/heldout",
                   "episodes/greedy/"):
        assert any(t.startswith(prefix) for t in tables), (prefix, tables)
    logged = b"".join(f.read_bytes() for r in runs for f in r.glob("run-*.wandb"))
    for artifact in (b"critique-data", b"critic", b"self-improve-critique-iter-1", b"self-talk", b"rft/heldout"):
        assert artifact in logged, artifact


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
