"""``python train.py``: every default stage on small sizes, in one run that the tests below read.

The run is traced with strace (connect() calls only), so the same run also shows that nothing the project runs
connects beyond this machine; it starts from a fresh machine's environment (no WANDB_/RAY_/HF_ variables).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_network import STRACE, _own_addresses, outward_connections

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


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default_run")
    run_dir, log = tmp / "run", tmp / "connect.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_", "HF_"))}  # a fresh machine
    # seccomp-bpf: only connect() stops the traced processes (plain ptrace stops them at every system call)
    trace = [STRACE, "--seccomp-bpf", "-f", "-qq", "-e", "trace=connect", "-o", str(log)] if STRACE else []
    proc = subprocess.run([*trace, sys.executable, str(ROOT / "train.py"), f"run_dir={run_dir}", *SMALL], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1200)
    return proc, run_dir, log if STRACE else None


def test_the_default_run_connects_only_to_this_machine(default_run):
    proc, run_dir, log = default_run
    assert log is not None, "this test traces the run with strace: install it (apt-get install strace; .ci/run does)"
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*")), "the offline W&B run was not written"
    assert outward_connections(log.read_text(), _own_addresses()) == []


def test_train_py_runs_the_default_stages(default_run):
    proc, run_dir, _ = default_run
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
    # the default experiment: the easy-levels actor, a curriculum at the level above its own, warm-up replay
    assert all(h[1]["levels"] == [5] for h in history.values())
    recipe = json.loads((run_dir / "self_improve" / "rft" / "iter_1" / "model" / "recipe.json").read_text())
    replay = json.loads((run_dir / "config.json").read_text())["self_improve"]["replay"]
    assert replay == 2048 and recipe["examples"] == history["rft"][1]["kept"] + replay
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


def test_resuming_self_improve_under_another_critic_gate_is_refused_by_name(default_run):
    proc, run_dir, _ = default_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    context = json.loads((run_dir / "self_improve" / "critique" / "iter_1" / "state.json").read_text())["config"]["context"]
    assert context["critic"]["name"] == "model_likelihood" and context["critic"]["accept_probability"] == 0.1
    assert context["critic"]["model"] == "critic"  # the run's own critic, relative to the run folder
    again = subprocess.run([sys.executable, str(ROOT / "train.py"), f"run_dir={run_dir}", *SMALL, "stages=[self_improve]",
                            "rerun=[self_improve]", "resume=true", "critic.accept_probability=0.03"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0
    assert "context.critic.accept_probability: 0.1 then, 0.03 now" in again.stderr + again.stdout, again.stderr[-3000:]
