"""The actor recipe on a short schedule (so the shipped checkpoint's recipe cannot rot), save/load, caching."""

import json
import subprocess
import sys

import torch

from agents.backends import SamplingParams
from agents.backends.hf import HFBackend
from agents.prompts import PromptTemplate
from envs import SyntheticArithmetic
from tests.conftest import ROOT
from trainers.sft import ActorSFTConfig, build_actor_examples, train_tiny_actor


def test_training_mix_has_solve_and_refine_examples():
    cfg = ActorSFTConfig(num_problems=400, refine_share=0.5, seed=1)
    examples = build_actor_examples(cfg)
    refine = [e for e in examples if "\nFeedback: " in e["prompt"]]
    assert len(examples) == 400 and 150 < len(refine) < 250
    assert all(e["prompt"].endswith("\n") and e["completion"] for e in examples)
    assert build_actor_examples(cfg) == examples  # seeded


def test_short_recipe_trains_saves_and_reloads(tmp_path):
    cfg = ActorSFTConfig(num_problems=300, train_steps=6, batch_size=8, max_steps=3)
    summary = train_tiny_actor(cfg, tmp_path / "actor", log_every=3)
    assert summary["parameters"] > 100_000 and summary["train_loss"] > 0
    saved = json.loads((tmp_path / "actor" / "recipe.json").read_text())
    assert saved["recipe"]["train_steps"] == 6
    backend = HFBackend(tmp_path / "actor", threads=1)
    prompt = PromptTemplate(number_format="reversed").prompt(SyntheticArithmetic(size=1)[0].question)
    ids = backend.encode(prompt)
    with torch.inference_mode():
        direct = backend.model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False,
                                        pad_token_id=backend.tokenizer.pad_token_id)[0, len(ids):].tolist()
    via_backend = backend.generate([prompt], SamplingParams(max_new_tokens=10))[0][0].token_ids
    assert via_backend == direct[: len(via_backend)]
    reloaded = HFBackend(tmp_path / "actor", threads=1)
    assert reloaded.generate([prompt], SamplingParams(max_new_tokens=10))[0][0].token_ids == via_backend


def test_train_py_runs_the_recipe_and_caches_the_warmup(tmp_path):
    args = [sys.executable, str(ROOT / "train.py"), f"run_dir={tmp_path}", "stages=[warmup,eval_actor]",
            "actor.init=train", "actor.warmup.train_steps=8", "actor.warmup.num_problems=300",
            "actor.warmup.batch_size=8", "eval.problems_per_level=2", "actor.max_new_tokens=48",
            "eval.with_critic=false"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "actor" / "model.safetensors").exists()
    result = json.loads((tmp_path / "results" / "eval_actor.json").read_text())
    assert set(result["metrics"]["accuracy"]["by_difficulty"]) == {str(d) for d in range(1, 9)}
    assert (tmp_path / "results" / "eval_actor.md").read_text().startswith("**Actor accuracy")
    second = subprocess.run(args[:4] + ["stages=[warmup]"] + args[5:], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "[warmup] cached" in second.stdout


def test_shipped_checkpoint_matches_the_configured_recipe():
    from omegaconf import OmegaConf

    from pipeline import load_config
    from pipeline.checkpoints import SHIPPED_ACTOR

    shipped = json.loads((SHIPPED_ACTOR / "recipe.json").read_text())
    configured = ActorSFTConfig.from_dict(OmegaConf.to_container(load_config([]).actor.warmup, resolve=True))
    from dataclasses import asdict

    assert shipped["recipe"] == asdict(configured)
    assert (SHIPPED_ACTOR / "model.safetensors").stat().st_size < 20 * 2**20


def test_shipped_critic_matches_the_configured_recipe_and_data():
    """The shipped critic is the configured recipe in two runs: the whole critiques from the actor (``base``),
    then, continuing that checkpoint, a short pass over whole critiques with the results set side by side and the
    two verdict drills (``recipe``)."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    from pipeline import load_config
    from pipeline.checkpoints import SHIPPED_CRITIC
    from trainers.critic_sft import CriticSFTConfig

    shipped = json.loads((SHIPPED_CRITIC / "recipe.json").read_text())
    cfg = load_config(["autocritique=full"])
    configured = asdict(CriticSFTConfig.from_dict({**OmegaConf.to_container(cfg.critic_training.recipe, resolve=True),
                                                   "init": "actor"}))
    base, last = shipped["base"]["recipe"], shipped["recipe"]
    assert base["init"] == "actor" and last["init"] == "checkpoint"
    phase1 = ("seed", "train_steps", "batch_size", "learning_rate", "warmup_ratio", "weight_decay", "max_length",
              "sampling_strategy", "number_format", "model")
    assert {k: base[k] for k in phase1} == {k: configured[k] for k in phase1}
    drills = ("verdict_examples", "verdict_line_steps", "verdict_line_learning_rate", "verdict_steps",
              "verdict_learning_rate", "batch_size", "max_length", "seed")
    assert {k: last[k] for k in drills} == {k: configured[k] for k in drills}
    assert [p["name"] for p in shipped["phases"]] == ["critiques", "verdict drill, lines", "verdict drill"]
    data = OmegaConf.to_container(cfg.autocritique, resolve=True)  # the autocritique=full dataset, seed 0
    data.pop("dataset")
    for part in (shipped, shipped["base"]):
        assert part["data"]["config"] == {**data, "seed": 0}
    assert shipped["base"]["data"]["rows"] == shipped["base"]["examples"]
    assert (SHIPPED_CRITIC / "model.safetensors").stat().st_size < 20 * 2**20
