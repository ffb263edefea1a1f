"""One registry per role, read by every stage; the typed config and the YAML that holds the default run."""

import json
import shutil
from dataclasses import asdict

import pytest
from omegaconf import OmegaConf

from agents.backends import BACKENDS
from core.critique import Critique, StepJudgement
from critics.base import BaseCritic
from critics.registry import CRITICS, CriticEntry, register_critic
from envs.registry import PROBLEM_SOURCES, SEED_OFFSETS, ProblemsConfig, problems_for, stage_seed
from pipeline import ConfigError, load_config, run_stages
from pipeline.config import CONFIG_DIR, _compose, config_groups
from pipeline.schema import RunConfig, register_schema
from tests.conftest import ROOT
from trainers.registry import ALGORITHMS


def test_each_registry_entry_has_its_config_and_each_config_its_entry():
    groups = config_groups()
    assert set(groups["critic"]) == set(CRITICS)
    assert set(groups["problems"]) == set(PROBLEM_SOURCES)
    assert {"hf", "openai", "vllm"} == set(BACKENDS)
    assert {"critique", "rft", "grpo", "grpo_critic", "rllib_ppo"} == set(ALGORITHMS)


def test_the_yaml_default_run_and_the_dataclass_defaults_agree():
    """The dataclasses are the schema and their defaults are the default run: the YAML cannot drift from them."""
    register_schema()
    composed = OmegaConf.to_container(_compose([], CONFIG_DIR), resolve=True)
    assert composed == json.loads(json.dumps(asdict(RunConfig())))


def test_every_critic_key_is_accepted_whichever_critic_is_chosen():
    assert load_config(["critic.accept_probability=0.3"]).critic.accept_probability == 0.3  # critic=oracle
    assert load_config(["critic=self", "critic.accept_probability=0.3"]).critic.accept_probability == 0.3
    with pytest.raises(ConfigError, match="env.max_turns"):
        load_config(["env.max_turns=many"])  # typed: a value of the wrong type names the key


def test_one_seeding_rule_for_every_purpose():
    cfg = ProblemsConfig(seed=5)
    assert stage_seed(2, cfg, "test_time") == 2 + 5 + SEED_OFFSETS["test_time"]
    assert stage_seed(2, cfg, "self_improve", iteration=3) == 2 + 5 + SEED_OFFSETS["self_improve"] + 3
    with pytest.raises(KeyError, match="unknown problem purpose"):
        stage_seed(0, cfg, "nope")
    a = problems_for(ProblemsConfig(), "eval_critic", 0, "test", 16)
    b = problems_for(ProblemsConfig(), "eval", 0, "test", 16)
    assert [p.id for p in a] != [p.id for p in b]  # two purposes, two sets
    per_level = problems_for(ProblemsConfig(), "test_time", 0, "test", 3, levels=[2, 5])
    assert [p.difficulty for p in per_level] == [2, 2, 2, 5, 5, 5]


class ShoutingCritic(BaseCritic):
    """A throwaway critic: calls the first step of every solution wrong."""

    name = "shout"

    def critique(self, problem, steps):
        return Critique((StepJudgement(1, False, feedback="Step 1 is wrong."),)) if steps else Critique()


@pytest.fixture
def shout_config_dir(tmp_path):
    """The new critic's three parts: the class above, one registry entry, one YAML in a copy of configs/."""
    register_critic("shout", CriticEntry(lambda settings, actor, seed: ShoutingCritic(), "shouting critic"))
    configs = tmp_path / "configs"
    shutil.copytree(CONFIG_DIR, configs)
    (configs / "critic" / "shout.yaml").write_text("name: shout\n")
    yield configs
    CRITICS.unregister("shout")


def test_a_new_critic_is_one_class_one_entry_one_yaml_and_every_stage_takes_it(shout_config_dir, tmp_path):
    cfg = load_config([
        f"run_dir={tmp_path / 'run'}", "stages=[warmup,eval_critic,eval_test_time,self_improve]", "critic=shout",
        "tracking.mode=disabled", "ray.enabled=false",
        "eval_critic.critics=[shout]", "eval_critic.problems_per_level=1", "eval_critic.samples_per_problem=1",
        "test_time.critics=[none,shout]", "test_time.levels=[2]", "test_time.hard_levels=[2]",
        "test_time.problems_per_level=2", "test_time.k_max=1", "test_time.ks=[1]", "test_time.budget_k_max=1",
        "test_time.max_rounds=1",
        "self_improve.algorithms=[critique]", "self_improve.critic=shout", "self_improve.iterations=1",
        "self_improve.problems_per_iteration=4", "self_improve.samples_per_problem=2", "self_improve.sft_steps=1",
        "self_improve.batch_size=4", "self_improve.eval_problems_per_level=1",
    ], config_dir=shout_config_dir)
    assert cfg.critic.name == "shout"
    run_stages(cfg)
    results = tmp_path / "run" / "results"
    assert "shouting critic" in json.loads((results / "eval_critic.json").read_text())["metrics"]["scores"]
    refine = json.loads((results / "eval_test_time.json").read_text())["metrics"]["refine"]
    assert set(refine) == {"none", "shout"} and refine["shout"]["episodes"] == 2
    assert "| shouting critic, 1 round(s) |" in (results / "eval_test_time.md").read_text()
    [start, first] = json.loads((results / "self_improve.json").read_text())["metrics"]["history"]["critique"]
    assert first["refinements"] >= 1  # the critic flagged every sample, so the loop refined within its budget
    with pytest.raises(ConfigError, match="unknown choice 'shout'"):
        load_config(["critic=shout"])  # without its YAML the config group does not offer it


def test_the_implementations_satisfy_their_role_protocols(tmp_path):
    from agents import Actor, PromptTemplate, SamplingParams
    from agents.backends.hf import HFBackend
    from core.protocols import Algorithm, Critic, LMBackend, Policy, RolloutRunner
    from critics.registry import CriticConfig, build_critics
    from envs.scripted import ScriptedActor
    from rollout.loop import PresampledActor
    from rollout.ray_pool import LocalRolloutRunner
    from trainers.self_improve import SelfImproveConfig

    backend = HFBackend(ROOT / "checkpoints" / "tiny-actor", threads=1)
    actor = Actor(backend, PromptTemplate(number_format="reversed"), SamplingParams(max_new_tokens=8))
    assert isinstance(backend, LMBackend)
    assert all(isinstance(p, Policy) for p in (actor, ScriptedActor(), PresampledActor({}, actor)))
    untrained = [n for n in CRITICS if not CRITICS[n].trained]
    assert all(isinstance(c, Critic) for c in build_critics(untrained, CriticConfig(), actor).values())
    runner = LocalRolloutRunner(actor, {"none": CriticConfig(name="none")})
    assert isinstance(runner, RolloutRunner) and runner.critic("none").name == "none"
    for name in ALGORITHMS:
        algorithm = ALGORITHMS[name].cls(SelfImproveConfig(), runner, actor, tmp_path / name, ProblemsConfig(),
                                         algorithm=name)
        assert isinstance(algorithm, Algorithm) and algorithm.name == name


def test_env_settings_reach_the_self_improvement_runner_and_the_critique_data(tmp_path, monkeypatch):
    from autocritique.flawed import sample_responses
    from critics.registry import CriticConfig
    from envs.math_env import EnvConfig
    from pipeline.context import Run
    from pipeline.self_improve_stages import _runner

    actor_path = ROOT / "checkpoints" / "tiny-actor"
    cfg = load_config(["env.max_action_chars=40", "ray.enabled=false", f"actor.model={actor_path}"])
    run = Run(cfg, tmp_path)
    actor = run.actor()
    runner = _runner(run, actor, {"none": CriticConfig(name="none")})
    long = problems_for(ProblemsConfig(), "eval", 0, "test", 2, levels=[8])
    records = runner.rollout(long, env={"max_refinements": 0})
    assert all("max_action_chars=40) kept whole" in r.action_errors[0] for r in records)
    import autocritique.flawed as flawed

    seen = []
    rollout = flawed.rollout
    monkeypatch.setattr(flawed, "rollout", lambda *a, **k: seen.append(a[3]) or rollout(*a, **k))
    sample_responses(long, actor, 1, env=EnvConfig(max_action_chars=40, max_turns=3))
    assert [(e.max_action_chars, e.max_turns, e.max_refinements) for e in seen] == [(40, 3, 0)]
