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
            "actor.warmup.batch_size=8", "actor.warmup.distractors=3", "eval.problems_per_level=2",
            "actor.max_new_tokens=48", "eval.with_critic=false"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (tmp_path / "actor" / "model.safetensors").exists()
    assert json.loads((tmp_path / "actor" / "recipe.json").read_text())["recipe"]["distractors"] == 3
    result = json.loads((tmp_path / "results" / "eval_actor.json").read_text())
    assert set(result["metrics"]["accuracy"]["by_difficulty"]) == {str(d) for d in range(1, 9)}
    assert (tmp_path / "results" / "eval_actor.md").read_text().startswith("**Actor accuracy")
    second = subprocess.run(args[:4] + ["stages=[warmup]"] + args[5:], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "[warmup] cached" in second.stdout


def test_shipped_checkpoint_matches_the_configured_recipe():
    from dataclasses import asdict

    from pipeline import load_config
    from pipeline.checkpoints import SHIPPED_ACTOR

    shipped = json.loads((SHIPPED_ACTOR / "recipe.json").read_text())
    configured = load_config([]).actor.warmup
    assert isinstance(configured, ActorSFTConfig)

    # a key the recipe gained after the checkpoint was built must be at the default, which is how it was built
    added = {k: v for k, v in asdict(ActorSFTConfig()).items() if k not in shipped["recipe"]}
    assert added == {"distractors": 0}
    assert shipped["recipe"] | added == asdict(configured)
    assert (SHIPPED_ACTOR / "model.safetensors").stat().st_size < 20 * 2**20


def test_shipped_critic_matches_the_configured_recipe_and_data():
    """The shipped critic is recipe=paper_tiny's critic recipe (``critic_training.init=actor``) trained in one go
    on the autocritique=full dataset: whole critiques, then the two verdict drills."""
    from dataclasses import asdict, replace

    from pipeline import load_config
    from pipeline.checkpoints import SHIPPED_CRITIC
    from trainers.critic_sft import CriticSFTConfig

    shipped = json.loads((SHIPPED_CRITIC / "recipe.json").read_text())
    cfg = load_config(["autocritique=full"])
    configured = asdict(replace(load_config(["recipe=paper_tiny"]).critic_training.recipe, init="actor"))
    recipe = {k: v for k, v in shipped["recipe"].items() if k not in ("threads", "actor_checkpoint")}
    # a key the recipe gained after the critic was built must be at the default, which is how it was built
    added = {k: v for k, v in asdict(CriticSFTConfig()).items() if k not in shipped["recipe"]}
    assert added == {"expand_layers": 0}
    assert recipe | added == {k: v for k, v in configured.items() if k != "threads"}
    assert [(p["name"], p["train_steps"]) for p in shipped["phases"]] == [
        ("critiques", configured["train_steps"]), ("verdict drill, lines", configured["verdict_line_steps"]),
        ("verdict drill", configured["verdict_steps"])]
    data = asdict(cfg.autocritique.pipeline_config(run_seed=0))  # the autocritique=full dataset, seed 0
    assert shipped["data"]["config"] == {**data, "kinds": list(data["kinds"])}
    assert shipped["data"]["rows"] == shipped["phases"][0]["examples"]
    assert (SHIPPED_CRITIC / "model.safetensors").stat().st_size < 20 * 2**20
