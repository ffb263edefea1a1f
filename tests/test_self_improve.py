import json
import os
import shutil
import signal
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from agents import Actor, ActorConfig, PromptTemplate, SamplingParams
from agents.backends.hf import HFBackend
from core.episode import EpisodeRecord
from critics.registry import CriticConfig
from envs import EnvConfig, SyntheticArithmetic
from envs.registry import ProblemsConfig
from rollout.ray_pool import LocalRolloutRunner, RayConfig, RayRolloutPool, WorkerSpec
from trainers.self_improve import GRPOSettings, PassRates, SelfImproveConfig, SelfImprover, allocate

ROOT = Path(__file__).resolve().parent.parent
ACTOR = ROOT / "checkpoints" / "tiny-actor"
CRITICS = {"none": CriticConfig(name="none"), "oracle": CriticConfig(name="oracle")}
PROBLEMS = ProblemsConfig(max_steps=4)


def _actor(path=ACTOR, batch_size=32):
    return Actor(HFBackend(path, threads=2, batch_size=batch_size), PromptTemplate(number_format="reversed"),
                 SamplingParams(max_new_tokens=160, seed=0))


# the plain self-improvement (self_improve=plain), which these tests exercise part by part
PLAIN = dict(actor=None, curriculum=False, curriculum_start=None, curriculum_threshold=0.5, curriculum_window=None,
             accumulate=False, replay=0, learning_rate=5e-4)


def _config(**kw):
    base = dict(critic="oracle", iterations=2, problems_per_iteration=8, samples_per_problem=2, sft_steps=2,
                batch_size=4, eval_problems_per_level=1)
    return SelfImproveConfig(**{**PLAIN, **base, **kw})


def _improver(config, actor, out, algorithm="critique", problems=PROBLEMS, runner=None, cls=SelfImprover,
              context=None):
    return cls(config, runner or LocalRolloutRunner(actor, CRITICS), actor, out, problems, algorithm=algorithm,
               context=context)


def _timeless(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _run(trainer, **kw):
    return [h.to_dict() for h in trainer.run(log=lambda *_: None, **kw)]


def test_allocator_spends_the_budget_and_favours_hard_levels():
    problems = SyntheticArithmetic(size=40, min_steps=1, max_steps=8, split="train", seed=1)[:]
    assert allocate(problems, 100) == [3] * 20 + [2] * 20
    rates = PassRates({"1": 1.0, "2": 0.9, "8": 0.0})
    counts = allocate(problems, 100, rates)
    assert sum(counts) == 100 and min(counts) >= 1
    by_level = {}
    for p, k in zip(problems, counts):
        by_level.setdefault(p.difficulty, []).append(k)
    mean = {d: sum(v) / len(v) for d, v in by_level.items()}
    assert mean[8] > mean[4] > mean[1] and mean[1] == 1
    with pytest.raises(ValueError, match="cannot give"):
        allocate(problems, 10)


def test_pass_rates_move_towards_what_is_seen():
    p = SyntheticArithmetic(size=1, min_steps=3, max_steps=3, seed=0)[0]
    rates = PassRates()
    assert rates[3] == 0.5
    records = [EpisodeRecord(p) for _ in range(4)]
    rates.update(records)  # none verified correct
    assert rates[3] == 0.0
    rates.update(records)
    assert rates[3] == 0.0 and rates[5] == 0.5


@pytest.mark.parametrize("algorithm", ["rft", "critique"])
def test_budget_accounting(tmp_path, algorithm):
    actor = _actor()
    trainer = _improver(_config(iterations=1), actor, tmp_path / algorithm, algorithm)
    [_, summary] = _run(trainer)
    assert summary["budget"] == 16 and summary["generations"] <= 16
    if algorithm == "rft":
        assert summary["samples"] == 16 and summary["refinements"] == 0 and summary["generations"] == 16
    else:
        assert summary["samples"] == 12  # a quarter of the budget kept back for refinements
        assert summary["refinements"] <= 4 and summary["generations"] == summary["samples"] + summary["refinements"]
    assert 0 <= summary["exploration"] <= 1 and summary["kept"] >= 1
    assert (tmp_path / algorithm / "iter_1" / "model" / "model.safetensors").exists()
    rows = [json.loads(x) for x in (tmp_path / algorithm / "iter_1" / "kept.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in rows]
    assert kinds.count("solve") == summary["kept"] and kinds.count("refine") == summary["refine_examples"]
    assert summary["refine_examples"] <= summary["refinements"] and (algorithm == "critique" or "refine" not in kinds)


def test_a_verified_refinement_becomes_a_refinement_example_of_the_warmup_format():
    import random

    from core.episode import Attempt
    from critics import OracleCritic
    from envs import corrupt_solution
    from envs.math_env import feedback_summary

    p = SyntheticArithmetic(size=1, min_steps=4, max_steps=4, seed=3)[0]
    bad = corrupt_solution(p, 3, "calculation", random.Random(0)).steps
    critique = OracleCritic().critique(p, bad)
    record = EpisodeRecord(problem=p, steps=list(p.steps), attempts=[Attempt(list(bad), critique, 2)])
    trainer = _improver(_config(), _actor(), "unused")
    row = trainer._refine_row(p, record)
    template = trainer.actor.template
    assert row["kind"] == "refine" and row["steps"] == list(p.steps)
    assert row["prompt"] == template.prompt(p.question, p.steps[:2], feedback_summary(critique))
    assert row["completion"] == template.completion(p.steps[2:])


def test_renumber_steps_relabels_the_kept_solutions_before_training():
    p = SyntheticArithmetic(size=1, min_steps=3, max_steps=3, seed=3)[0]
    habit = [p.steps[0], p.steps[1].replace("Step 2", "Step 1"), p.steps[2], p.steps[3]]  # the model's labels
    assert habit != list(p.steps)
    plain, renumbered = (_improver(_config(renumber_steps=flag), _actor(), "unused") for flag in (False, True))
    assert plain._row(p, habit)["steps"] == habit
    row = renumbered._row(p, habit)
    assert row["steps"] == list(p.steps) and row["completion"] == renumbered.actor.template.completion(p.steps)


def test_the_curriculum_draws_levels_up_to_the_frontier_plus_one():
    rates = PassRates({"1": 0.9, "2": 0.8, "3": 0.6, "4": 0.2, "6": 0.9})
    assert rates.frontier(range(1, 9), start=1, threshold=0.5) == 3  # 4 has not reached it; 6 is beyond a gap
    assert rates.frontier(range(1, 9), start=4, threshold=0.5) == 4  # 5 never seen
    assert rates.frontier(range(1, 9), start=2, threshold=0.1) == 4
    trainer = _improver(_config(curriculum=True, curriculum_start=2, problems_per_iteration=12), _actor(), "unused",
                        problems=ProblemsConfig(max_steps=8))
    first = trainer._problems(1)
    assert len(first) == 12 and {p.difficulty for p in first} == {1, 2, 3}
    trainer.rates = PassRates({"3": 0.7, "4": 0.6})
    assert {p.difficulty for p in trainer._problems(2)} == {1, 2, 3, 4, 5}
    assert trainer._problems(2) == trainer._problems(2)  # seeded
    trainer.config = replace(trainer.config, curriculum_window=1)  # the experiment's: the level above the frontier
    assert {p.difficulty for p in trainer._problems(2)} == {5}
    trainer.config = replace(trainer.config, curriculum_window=2)
    assert {p.difficulty for p in trainer._problems(2)} == {4, 5}
    with pytest.raises(ValueError, match="curriculum_threshold"):
        _config(curriculum_threshold=0)


def test_keep_arithmetic_drops_the_right_answers_reached_by_wrong_steps(tmp_path):
    """Beyond its references the actor often reaches the right number through wrong steps (1*11=15, 1-17=2, ...,
    Answer: 1); ``keep=arithmetic`` drops those from the kept rows and nothing else, on the same rollouts."""
    from rewards.steps import check_step
    from trainers.self_improve import KEEP_RULES

    assert KEEP_RULES["arithmetic"](["Step 1: 5/5=1", "Step 2: 4*21=84", "Answer: 84"], None)
    assert not KEEP_RULES["arithmetic"](["Step 1: 5/5=1", "Step 2: 1*11=15", "Answer: 15"], None)
    assert KEEP_RULES["answer"](["Step 1: 1*11=15", "Answer: 15"], None)
    level5 = ProblemsConfig(min_steps=5, max_steps=5)
    kept, bench = {}, _benchmark("kept_solutions")
    for rule in ("answer", "arithmetic"):
        actor = _actor(ROOT / "checkpoints" / "tiny-actor-easy", batch_size=64)
        config = _config(iterations=1, problems_per_iteration=48, samples_per_problem=4, keep=rule)
        out = tmp_path / rule / "self_improve" / "rft"  # a pipeline run's layout, for the benchmark below
        _run(_improver(config, actor, out, algorithm="rft", problems=level5))
        kept[rule] = [json.loads(line) for line in (out / "iter_1" / "kept.jsonl").read_text().splitlines()]
        (tmp_path / rule / "config.json").write_text(json.dumps({
            "seed": 0, "problems": asdict(level5), "self_improve": asdict(config)}))
    sound = [row for row in kept["answer"] if all(check_step(step).ok for step in row["steps"])]
    assert kept["arithmetic"] == sound and len(sound) < len(kept["answer"])
    # benchmarks/kept_solutions.py finds each kept row's problem again and counts the sound ones by level
    counts = bench.measure(tmp_path / "answer")["rft"]["5"]
    assert counts["kept"] == len(kept["answer"]) and counts["arithmetic_ok"] == len(sound)
    assert 0 < counts["every_step_right"] <= counts["arithmetic_ok"]
    assert bench.measure(tmp_path / "arithmetic")["rft"]["5"]["arithmetic_ok"] == len(sound)
    for bad in ("critics", "arithmetic+", "oracle+critic"):
        with pytest.raises(ValueError, match="self_improve.keep"):
            _config(keep=bad)


def test_keep_critic_drops_the_solutions_the_critic_in_the_loop_flags(tmp_path):
    """``keep=critic``: the critique loop keeps a right-answer solution only if its critic passed that very
    solution (a sample's first critique, a refinement's last). With the oracle in the loop, whose verdict is
    "every step right", the kept rows are exactly the sound ones among what ``keep=answer`` keeps, on the same
    rollouts. RFT has no critic in its loop, so the rule passes its solutions; rules join with "+"."""
    from critics import OracleCritic
    from trainers.self_improve import keep_rule

    flawed = ["Step 1: 1*11=15", "Answer: 15"]
    assert keep_rule("critic")(flawed, None) and not keep_rule("arithmetic+critic")(flawed, None)
    level5 = ProblemsConfig(min_steps=5, max_steps=5)
    kept, history = {}, {}
    for rule in ("answer", "critic"):
        actor = _actor(ROOT / "checkpoints" / "tiny-actor-easy", batch_size=64)
        config = _config(iterations=1, problems_per_iteration=48, samples_per_problem=4, keep=rule)
        out = tmp_path / rule
        history[rule] = _run(_improver(config, actor, out, algorithm="critique", problems=level5))[-1]
        kept[rule] = [json.loads(line) for line in (out / "iter_1" / "kept.jsonl").read_text().splitlines()]
    # exploration is what the rollouts found, before the rule; what the rule kept is counted beside it
    assert history["critic"]["exploration"] == history["answer"]["exploration"] > 0
    assert history["critic"]["diversity"] == history["answer"]["diversity"]
    assert history["critic"]["kept_problems"] < history["answer"]["kept_problems"]
    assert history["answer"]["kept_problems"] == history["answer"]["exploration"]
    problems = {p.id: p for p in SelfImprover(_config(problems_per_iteration=48), None, None, tmp_path, level5)
                ._problems(1)}
    oracle = OracleCritic()
    sound = [row for row in kept["answer"] if oracle.critique(problems[row["id"]], row["steps"]).is_correct]
    assert kept["critic"] == sound and 0 < len(sound) < len(kept["answer"])
    assert {row["kind"] for row in sound} == {"solve", "refine"}


def test_a_killed_run_resumes_to_the_same_numbers(tmp_path):
    actor = _actor()
    straight = _improver(_config(), actor, tmp_path / "straight")
    expected = _timeless(_run(straight))
    assert [h["iteration"] for h in expected] == [0, 1, 2]

    actor = _actor()
    killed = _improver(_config(), actor, tmp_path / "killed")
    original = killed.iteration

    def die_in_second(i):
        if i == 2:
            raise KeyboardInterrupt("killed")
        return original(i)

    killed.iteration = die_in_second
    with pytest.raises(KeyboardInterrupt):
        killed.run(log=lambda *_: None)
    assert (tmp_path / "killed" / "iter_1" / "state.json").exists()
    assert not (tmp_path / "killed" / "iter_2" / "state.json").exists()

    actor = _actor()  # a fresh process: the warm-up weights again
    resumed = _improver(_config(), actor, tmp_path / "killed")
    messages = []
    assert _timeless([h.to_dict() for h in resumed.run(resume=True, log=messages.append)]) == expected
    assert "resumed after iteration 1" in messages[0]
    with pytest.raises(ValueError, match="another config"):
        _run(_improver(_config(sft_steps=3), actor, tmp_path / "killed"), resume=True)


def test_a_finished_run_is_extended_by_more_iterations_to_the_numbers_of_a_longer_run(tmp_path):
    longer = _timeless(_run(_improver(_config(iterations=3), _actor(), tmp_path / "longer")))
    assert _timeless(_run(_improver(_config(iterations=2), _actor(), tmp_path / "run"))) == longer[:3]
    # a state written before the config gained a key is the same config while that key is at its default
    state_file = tmp_path / "run" / "iter_2" / "state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["problems"]["distractors"], state["config"]["renumber_steps"], state["config"]["context"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"another config \(problems.distractors: '\(unset\)' then, 1 now\)"):
        _run(_improver(_config(iterations=3), _actor(), tmp_path / "run", problems=replace(PROBLEMS, distractors=1)),
             resume=True)
    messages = []
    # a state that does not record the settings outside self_improve (the context) resumes under any
    gate = lambda p: {"critic": {"name": "model_likelihood", "accept_probability": p}}  # noqa: E731
    extended = _improver(_config(iterations=3), _actor(), tmp_path / "run", context=gate(0.1))
    assert _timeless([h.to_dict() for h in extended.run(resume=True, log=messages.append)]) == longer
    assert "resumed after iteration 2" in messages[0] and "iteration 3:" in messages[1]
    # fewer iterations than were run take up that iteration's state and run nothing
    shorter = _improver(_config(iterations=1), _actor(), tmp_path / "run")
    assert _timeless([h.to_dict() for h in shorter.run(resume=True, log=lambda *_: None)]) == longer[:2]
    with pytest.raises(ValueError, match="only self_improve.iterations may change"):
        _run(_improver(_config(iterations=4, sft_steps=3), _actor(), tmp_path / "run"), resume=True)
    # one that does is held to them: another critic gate is another run
    with pytest.raises(ValueError, match=r"context.critic.accept_probability: 0.1 then, 0.03 now"):
        _run(_improver(_config(iterations=4), _actor(), tmp_path / "run", context=gate(0.03)), resume=True)


def test_ray_worker_killed_mid_iteration_is_replaced_and_the_rollout_completes():
    spec = WorkerSpec(str(ACTOR), ActorConfig(), SamplingParams(max_new_tokens=160, seed=0), CRITICS,
                      {"max_refinements": 1}, 16, 1)
    pool = RayRolloutPool(RayConfig(num_workers=2), spec)
    try:
        # enough problems that worker 0 is still busy when it is killed, on a fast idle machine too
        problems = SyntheticArithmetic(size=128, min_steps=4, max_steps=8, split="test", seed=3)[:]
        clean = pool.rollout(problems, seed=0, critic="oracle")
        assert [r.problem.id for r in clean] == [p.id for p in problems] and pool.last_restarts == []
        victim = pool.worker_pids()[0]
        timer = threading.Timer(1.0, lambda: os.kill(victim, signal.SIGKILL))
        timer.start()
        started = time.perf_counter()
        again = pool.rollout(problems, seed=0, critic="oracle")
        timer.join()
        assert time.perf_counter() - started > 1.0
        assert len(pool.last_restarts) == 1 and "worker 0 died" in pool.last_restarts[0]
        assert [r.steps for r in again] == [r.steps for r in clean]  # the chunk re-ran with the same seed
        assert victim not in pool.worker_pids()
    finally:
        pool.shutdown()
        import ray

        ray.shutdown()


def test_episode_reward_is_the_verified_answer_plus_the_critics_accepted_share():
    from critics import OracleCritic
    from envs import corrupt_solution
    from rollout.loop import rollout
    from trainers.trl_env import accepted_share, episode_reward

    p = SyntheticArithmetic(size=1, min_steps=3, max_steps=3, seed=2)[0]
    import random

    wrong = corrupt_solution(p, 2, "calculation", random.Random(0)).steps

    class Fixed:
        def act_batch(self, observations, infos):
            return ["\n".join(p.steps if i % 2 == 0 else wrong) for i, _ in enumerate(observations)]

    records = rollout([p, replace(p, id="b")], Fixed(), OracleCritic(), EnvConfig(max_refinements=0), batch_size=2)
    shares = [accepted_share(r) for r in records]
    assert shares[0] == 1.0 and 0.0 < shares[1] < 1.0  # the steps before the slip are accepted
    plain, dense = episode_reward(), episode_reward(0.5)
    fields = dict(correct=[r.correct for r in records], step_share=shares)
    assert plain([""] * 2, [""] * 2, **fields) == [1.0, 0.0]
    assert dense([""] * 2, [""] * 2, **fields) == [1.5, 0.5 * shares[1]]
    assert accepted_share(EpisodeRecord(problem=p)) == 0.0  # no critic in the loop


def _grpo_config():
    return SelfImproveConfig(**PLAIN, critic="oracle", iterations=1, problems_per_iteration=4, samples_per_problem=2,
                             batch_size=4, eval_problems_per_level=1, grpo=GRPOSettings(max_completion_length=48))


@pytest.mark.parametrize("batch_size", [4, 32])  # 32: a batch larger than the whole budget of 8
def test_grpo_baseline_runs_one_iteration_within_the_budget(tmp_path, batch_size):
    from trainers.grpo import GRPOBaseline

    actor = _actor()
    config = replace(_grpo_config(), batch_size=batch_size)
    [start, summary] = _run(_improver(config, actor, tmp_path / "grpo", "grpo", ProblemsConfig(max_steps=3),
                                      cls=GRPOBaseline))
    assert summary["generations"] == summary["budget"] == 8 and summary["grpo_steps"] == (2 if batch_size == 4 else 1)
    assert 0 <= summary["exploration"] <= 1 and summary["mean_reward"] is not None
    assert (tmp_path / "grpo" / "iter_1" / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("runner", ["local", "ray"])
def test_grpo_critic_takes_its_dense_reward_from_either_runner(tmp_path, runner):
    """grpo_critic asks the runner for the critic (the Ray pool builds it in the driver as well)."""
    from trainers.grpo import GRPOBaseline

    actor = _actor()
    if runner == "ray":
        spec = WorkerSpec(str(ACTOR), ActorConfig(), actor.sampling, CRITICS, {}, 16, 1)
        pool = RayRolloutPool(RayConfig(num_workers=1), spec, local_actor=actor)
    else:
        pool = LocalRolloutRunner(actor, CRITICS)
    try:
        [_, summary] = _run(_improver(_grpo_config(), actor, tmp_path / runner, "grpo_critic", ProblemsConfig(max_steps=3),
                                      runner=pool, cls=GRPOBaseline))
    finally:
        pool.shutdown()
        if runner == "ray":
            import ray

            ray.shutdown()
    # every completion GRPO learned from was an episode of the runner's environment, reviewed by its critic
    assert summary["generations"] == 8 and summary["reviewed"] == 8 and summary["mean_reward"] is not None
    assert (tmp_path / runner / "iter_1" / "model" / "model.safetensors").exists()


def test_restart_from_base_retrains_the_starting_weights_on_everything_kept_and_resumes_it(tmp_path):
    import torch

    actor = _actor()
    start = {k: v.clone() for k, v in actor.backend.model.state_dict().items()}
    config = _config(restart="base", epochs=1.0, iterations=2)
    trainer = _improver(config, actor, tmp_path / "base", "rft")
    _run(trainer)
    kept = [len((tmp_path / "base" / f"iter_{i}" / "kept.jsonl").read_text().splitlines()) for i in (1, 2)]
    assert len(trainer.kept) == sum(kept) and kept[0] >= 1
    recipe = json.loads((tmp_path / "base" / "iter_2" / "model" / "recipe.json").read_text())
    assert recipe["examples"] == sum(kept)  # iteration 2 trained on both iterations' solutions
    assert all(torch.equal(trainer._base[k], start[k]) for k in start)  # the base is the starting weights
    # resumed after iteration 1, the next retraining sees iteration 1's solutions again
    (tmp_path / "base" / "iter_2" / "state.json").unlink()
    again = _improver(config, _actor(), tmp_path / "base", "rft")
    again.run(resume=True, log=lambda *_: None)
    first = [json.loads(x)["steps"] for x in (tmp_path / "base" / "iter_1" / "kept.jsonl").read_text().splitlines()]
    assert [row["steps"] for row in again.kept[: kept[0]]] == first
    assert json.loads((tmp_path / "base" / "iter_2" / "model" / "recipe.json").read_text())["examples"] == len(again.kept)
    with pytest.raises(ValueError, match="restart must be"):
        _config(restart="sometimes")


def test_a_lora_iteration_merges_its_adapter_into_the_weights_the_rollouts_use(tmp_path):
    import torch

    actor = _actor()
    before = {k: v.clone() for k, v in actor.backend.model.state_dict().items()}
    trainer = _improver(_config(lora=True, iterations=1, learning_rate=1e-2), actor, tmp_path / "lora", "rft")
    [_, summary] = _run(trainer)
    after = actor.backend.model.state_dict()
    assert set(after) == set(before)  # merged: no adapter layers left in the rollout model
    assert summary["kept"] >= 1 and any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "lora" / "iter_1" / "model" / "adapter" / "adapter_config.json").exists()


def _benchmark(name: str = "self_improvement"):
    """A script of benchmarks/ as a module (the benchmarks folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_error_analysis_by_level_places_every_wrong_solutions_first_error():
    """benchmarks/actor_errors.py --levels: each wrong greedy solution counted once, at a step of its level (0
    when only the answer is wrong), with a kind; the right ones not at all."""
    bench = _benchmark("actor_errors")
    backend = HFBackend(str(ROOT / "checkpoints" / "tiny-actor-easy"), threads=2)
    row = bench.first_errors(backend, PromptTemplate(number_format="reversed"), level=5, problems=12)
    wrong = sum(row["first_error_step"].values())
    assert row["problems"] == 12 and wrong == sum(row["kinds"].values()) == round(12 * (1 - row["accuracy"]))
    assert wrong >= 6  # the easy actor solves few level-5 problems (0.07 greedy)
    assert all(0 <= int(step) <= 5 for step in row["first_error_step"])
    assert set(row["kinds"]) <= {name for name, _ in bench.KINDS} | {"other"}


def test_the_self_improvement_benchmark_summarises_bands_and_the_worst_level_change():
    bench = _benchmark()

    def it(i, accs, exploration=None):
        return {"iteration": i, "heldout": {"overall": sum(accs) / len(accs),
                                            "by_difficulty": {str(lv): a for lv, a in enumerate(accs, start=1)}},
                "exploration": exploration, "diversity": exploration, "generations": 0 if i == 0 else 16}

    history = [it(0, [1.0, 0.8, 0.1, 0.0]), it(1, [1.0, 0.7, 0.2, 0.0], 0.5), it(2, [0.9, 0.8, 0.3, 0.1], 0.7)]
    s = bench.summarise(history, {"warmup_levels": [1, 2], "next": [3], "above": [3, 4], "hardest": [4]})
    assert s["warmup_levels"] == pytest.approx(0.85) and s["start_warmup_levels"] == pytest.approx(0.9)
    assert s["above"] == pytest.approx(0.2) and s["start_above"] == pytest.approx(0.05) and s["hardest"] == 0.1
    assert s["next"] == pytest.approx(0.3) and s["start_next"] == pytest.approx(0.1)
    assert s["worst_level_change"] == pytest.approx(-0.1) and s["generations"] == 32
    assert s["exploration"] == pytest.approx(0.6) and len(s["iterations"]) == 3
    assert bench.fmt([0.5]) == "0.500" and bench.fmt([0.4, 0.6]) == "0.500 ± 0.100"


def test_the_benchmarks_final_evaluation_pairs_each_level_by_problem(tmp_path):
    """The start and a last checkpoint measured on the same fresh problems: the same weights change no level and
    their interval is empty; a per-problem difference's interval is the normal one."""
    bench = _benchmark()
    paired = bench.paired_change([1, -1, 0, 0, -1])
    assert paired["change"] == pytest.approx(-0.2) and paired["ci95"] == pytest.approx(1.96 * (0.7 / 5) ** 0.5, abs=1e-4)
    assert (paired["gained"], paired["lost"], paired["n"]) == (1, 2, 5)

    model = tmp_path / "N4-seed0" / "self_improve" / "rft" / "iter_1" / "model"
    shutil.copytree(ROOT / "checkpoints" / "tiny-actor", model)
    extra = ["self_improve.iterations=1", "self_improve.actor=checkpoints/tiny-actor"]
    shutil.copytree(ROOT / "checkpoints" / "tiny-actor-easy", model.parents[2] / "critique" / "iter_1" / "model")
    result = bench.final_eval(4, 0, ["rft", "critique"], extra, tmp_path, per_level=3)
    assert result["accuracy"]["rft"] == result["accuracy"]["start"] and len(result["accuracy"]["start"]) == 8
    assert all(c["change"] == 0 and c["ci95"] == 0 and c["n"] == 3 for c in result["change"]["rft"].values())
    # the lead of one algorithm over another is their accuracies' difference on the same problems, level by level
    lead = result["versus"]["critique - rft"]
    for lv, acc in result["accuracy"]["critique"].items():
        assert lead[lv]["change"] == pytest.approx(acc - result["accuracy"]["rft"][lv], abs=1e-3)
        assert lead[lv] == result["change"]["critique"][lv]  # rft's weights are the start's here
    assert any(c["change"] != 0 for c in lead.values())  # the two models differ somewhere
    assert (tmp_path / "N4-seed0" / "results" / "final_eval_3.json").exists()  # cached: a rerun reads it back
    assert bench.final_eval(4, 0, ["rft", "critique"], extra, tmp_path, per_level=3) == result
    # the run extended by an iteration: its new last checkpoints are measured, not the cache of the old ones
    for alg in ("rft", "critique"):
        shutil.copytree(ROOT / "checkpoints" / "tiny-actor-easy", model.parents[2] / alg / "iter_2" / "model")
    longer = bench.final_eval(4, 0, ["rft", "critique"], [extra[1], "self_improve.iterations=2"], tmp_path, per_level=3)
    assert longer["models"]["rft"].endswith("iter_2/model") and longer["accuracy"]["rft"] == result["accuracy"]["critique"]
    train = bench.final_eval(4, 0, ["rft"], extra, tmp_path, per_level=3, split="train")  # for choosing settings
    assert train["split"] == "train" and (tmp_path / "N4-seed0" / "results" / "final_eval_train_3.json").exists()


def test_the_benchmark_reruns_a_cached_run_whose_resolved_settings_differ(tmp_path, monkeypatch):
    """A run is read back only when its overrides *and* the settings they resolved to match: a run cached under
    other config defaults is run again (one cached before settings were recorded is trusted on its overrides)."""
    bench = _benchmark()
    runs = []

    def fake_run(cfg):  # stands in for the self_improve stage: writes the stage's results file
        runs.append(cfg.self_improve.sft_steps)
        results = Path(cfg.run_dir) / "results" / "self_improve.json"
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps({"history": []}))

    monkeypatch.setattr(bench, "run_stages", fake_run)
    first = bench.run_one(4, 0, ["rft"], [], tmp_path)
    assert runs == [180] and first["benchmark_settings"]["sft_steps"] == 180
    bench.run_one(4, 0, ["rft"], [], tmp_path)
    assert runs == [180]  # read back
    results = tmp_path / "N4-seed0" / "results" / "self_improve.json"
    stale = json.loads(results.read_text())
    stale["benchmark_settings"]["sft_steps"] = 60  # cached under the earlier defaults
    results.write_text(json.dumps(stale))
    bench.run_one(4, 0, ["rft"], [], tmp_path)
    assert runs == [180, 180]
    del stale["benchmark_settings"]
    results.write_text(json.dumps(stale))
    bench.run_one(4, 0, ["rft"], [], tmp_path)
    assert runs == [180, 180]


def test_a_fork_takes_up_another_runs_iteration_and_goes_on_under_its_own_config(tmp_path):
    _acc = lambda **kw: _config(accumulate=True, **kw)  # noqa: E731  (each fine-tune sees every row kept so far)
    run = tmp_path / "run"  # a run folder: each algorithm's iterations in self_improve/<algorithm>/
    source = _timeless(_run(_improver(_acc(iterations=2), _actor(), run / "self_improve" / "critique")))
    # nothing changed: a fork at iteration 1 is that run resumed there, to the same numbers
    fork = _improver(_acc(iterations=2, fork_from=str(run), fork_iteration=1), _actor(), tmp_path / "same")
    messages = []
    assert _timeless([h.to_dict() for h in fork.run(log=messages.append)]) == source
    assert "forked from iteration 1" in messages[0] and "resumed after iteration 1" in messages[1]
    assert (tmp_path / "same" / "iter_1" / "kept.jsonl").read_text() == \
        (run / "self_improve" / "critique" / "iter_1" / "kept.jsonl").read_text()
    assert len(fork.kept) == sum(h["kept"] for h in source[1:])  # the branch fine-tunes on the source's rows too
    # another setting from iteration 2 on: the past is the source's, the state records the fork
    branch = _improver(_acc(iterations=2, sft_steps=3, fork_from=str(run), fork_iteration=1), _actor(),
                       tmp_path / "branch")
    history = _timeless(_run(branch))
    assert history[:2] == source[:2] and len(history) == 3
    state = json.loads((tmp_path / "branch" / "iter_2" / "state.json").read_text())
    assert state["config"]["sft_steps"] == 3 and state["config"]["fork_iteration"] == 1
    with pytest.raises(ValueError, match=r"sft_steps: 3 then, 60 now"):  # its own iterations are held to it
        _run(_improver(_acc(iterations=3, sft_steps=60, fork_from=str(run), fork_iteration=1), _actor(),
                       tmp_path / "branch"), resume=True)
    with pytest.raises(ValueError, match=r"rft/iter_2 is not a finished iteration of rft"):
        _run(_improver(_acc(iterations=3, fork_from=str(run), fork_iteration=2), _actor(), tmp_path / "x",
                       algorithm="rft"))
    with pytest.raises(ValueError, match=r"fork_iteration must be in \[1, iterations=2\]"):
        _acc(iterations=2, fork_from=str(run), fork_iteration=3)
