"""The test-time supervision stage: critique -> refine rounds and parallel scaling, for each critic side by side.

1. Greedy actor, each critic, up to ``max_rounds`` refinements (one rollout per critic holds every round);
   refinements are sampled at ``refine_temperature`` (0: greedy, which rewrites a flagged step the same way
   every round).
2. ``k_max`` samples per problem at ``temperature`` drawn once (one rollout, no critic), and more, up to
   ``budget_k_max``, for plain majority voting given the tokens a critic method spends.
3. Each critic reviews those same samples and refines the flagged ones (a :class:`PresampledActor` replays the
   samples as first actions). From that one rollout: majority voting, critic-filtered majority, best-of-k and
   pass@k over the drawn samples, and refine-then-vote (sequential + parallel), with every generated token
   counted so methods of different cost are compared at equal budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.checkpoints import actor_checkpoint
from pipeline.config import ConfigError
from pipeline.factory import TRAINED_CRITIC_VERDICTS, make_actor, make_critic, trained_critics

__all__ = ["eval_test_time", "build_named_critics"]

CRITIC_LABELS = {"none": "no critic", "self": "self-check", "model": "trained critic",
                 "model_checks": "trained critic, compared in code",
                 "model_likelihood": "trained critic, likelihood-gated", "oracle": "oracle"}


def build_named_critics(names: list[str], cfg: DictConfig, actor: Any) -> dict[str, Any]:
    """Critics by short name, with the run's actor and critique model (loaded once for all its variants)."""
    unknown = [n for n in names if n not in CRITIC_LABELS]
    if unknown:
        raise ConfigError(f"unknown test_time critic {unknown[0]!r}; valid: {', '.join(CRITIC_LABELS)}")
    trained = trained_critics(cfg, [n for n in names if n in TRAINED_CRITIC_VERDICTS])
    return {n: trained[n] if n in trained else make_critic({"name": n}, actor=actor) for n in names}


def _problems(cfg: DictConfig) -> list:
    from envs import SyntheticArithmetic

    p, t = cfg.problems, cfg.test_time
    if p.name != "synthetic":
        from pipeline.stages import eval_problems

        return eval_problems(cfg)[: int(t.problems_per_level) * 8]
    levels = list(t.levels) if t.get("levels") else list(range(int(p.min_steps), int(p.max_steps) + 1))
    out = []
    for level in levels:
        out += SyntheticArithmetic(size=int(t.problems_per_level), min_steps=level, max_steps=level,
                                   max_operand=int(p.max_operand), max_value=int(p.max_value), split=str(t.split),
                                   seed=int(cfg.seed) + 100 + level)[:]
    return out


def eval_test_time(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from dataclasses import replace

    from agents.actor import Actor
    from critics import NullCritic
    from envs import EnvConfig
    from evaluation import write_results
    from evaluation.test_time import PresampledActor, budget_matched, refinement_summary, replicate, samples_of, scaling_curves
    from evaluation.tracking import EPISODE_COLUMNS, Tracker, episode_rows
    from rollout import rollout

    t = cfg.test_time
    if t.split not in ("train", "test"):
        raise ConfigError(f"test_time.split must be 'train' or 'test', got {t.split!r}")
    rounds, k_max, ks = int(t.max_rounds), int(t.k_max), [int(k) for k in t.ks]
    if max(ks) > k_max:
        raise ConfigError(f"test_time.ks {ks} go beyond test_time.k_max={k_max}")
    actor = make_actor(cfg.actor, actor_checkpoint(cfg), seed=int(cfg.seed))
    refine_t = float(t.refine_temperature)
    greedy = Actor(actor.backend, actor.template, replace(actor.sampling, temperature=0.0),
                   refine_sampling=replace(actor.sampling, temperature=refine_t) if refine_t > 0 else None)
    sampler = Actor(actor.backend, actor.template, replace(actor.sampling, temperature=float(t.temperature)))
    problems = _problems(cfg)
    difficulty = {p.id: p.difficulty for p in problems}
    base_env = {**OmegaConf.to_container(cfg.env, resolve=True), "action_unit": "solution"}
    batch = int(cfg.actor.batch_size)
    critics = build_named_critics(list(t.critics), cfg, actor)
    hard = [str(level) for level in (t.hard_levels or [])]

    tracker = Tracker(str(cfg.tracking.mode), run_dir, project=str(cfg.tracking.project),
                      name=f"{Path(cfg.run_dir).name}-test-time", config=OmegaConf.to_container(cfg, resolve=True))
    metrics: dict[str, Any] = {"problems": len(problems), "refine_temperature": refine_t, "refine": {}, "scaling": {},
                               "budget": {}}

    # 1. greedy, critique -> refine for 0..R rounds
    for name, critic in critics.items():
        records = rollout(problems, greedy, critic, EnvConfig(**{**base_env, "max_refinements": rounds}),
                          batch_size=batch, seed=int(cfg.seed))
        metrics["refine"][name] = refinement_summary(records, rounds)
        tracker.table(f"episodes/greedy/{name}", EPISODE_COLUMNS, episode_rows(records[: int(t.table_episodes)]))

    # 2. samples per problem, drawn once: the first k_max for every method, and more for plain majority voting
    # to be given as many tokens as a critic method spends (the critic's tokens count too)
    budget_k = max(k_max, int(t.budget_k_max))
    drawn = rollout(replicate(problems, budget_k), sampler, NullCritic(),
                    EnvConfig(**{**base_env, "max_refinements": 0}), batch_size=batch, seed=int(cfg.seed))
    first = {r.problem.id: r for r in drawn}
    plain = samples_of(drawn, k_max)
    plain_budget = samples_of(drawn, budget_k)
    copies = replicate(problems, k_max)  # the same ids as the first k_max drawn samples
    metrics["scaling"]["no critic"] = scaling_curves(plain, difficulty, ks, ["majority", "pass@k"])

    # 3. each critic on the same samples: select, and refine then vote
    for name, critic in critics.items():
        if name == "none":
            continue
        records = rollout(copies, PresampledActor(first, sampler), critic,
                          EnvConfig(**{**base_env, "max_refinements": int(t.sample_rounds)}), batch_size=batch,
                          seed=int(cfg.seed))
        reviewed = samples_of(records, k_max, rounds=0)
        refined = samples_of(records, k_max, rounds=int(t.sample_rounds))
        curves = scaling_curves(reviewed, difficulty, ks, ["critic_filtered_majority", "best_of_k"])
        curves["refine_then_majority"] = scaling_curves(refined, difficulty, ks, ["majority"])["majority"]
        metrics["scaling"][name] = curves
        metrics["budget"][name] = {}
        for method, samples in (("critic_filtered_majority", reviewed), ("refine_then_majority", refined)):
            for k in ks:
                spent = curves[method][f"k={k}"]["mean_tokens"]
                scored = curves[method][f"k={k}"]["mean_scored_tokens"]
                metrics["budget"][name][f"{method}@k={k}"] = {
                    "accuracy_hard": _hard_accuracy(method, samples, k, hard, difficulty),
                    "majority_same_tokens_hard": budget_matched(plain_budget, spent, hard or None, difficulty),
                    "tokens": spent,
                    # a likelihood-gated critic also reads the lines it scores: counted as if generated
                    "scored_tokens": scored,
                    "majority_same_tokens_incl_scored_hard": budget_matched(plain_budget, spent + scored, hard or None,
                                                                            difficulty),
                }
        tracker.table(f"episodes/sampled/{name}", EPISODE_COLUMNS, episode_rows(records[: int(t.table_episodes)]))

    tables = _tables(metrics, critics, ks, rounds, hard)
    for md in tables.values():
        print(md + "\n")
    plots = _plots(metrics, critics, ks, run_dir / "results")
    tracker.log(_flat(metrics))
    for key, path in plots.items():
        tracker.image(f"plots/{key}", path)
    where = tracker.directory
    tracker.finish()
    write_results(run_dir / "results", "eval_test_time", {"test_time": OmegaConf.to_container(t, resolve=True),
                                                          "actor": OmegaConf.to_container(cfg.actor, resolve=True)},
                  metrics, tables)
    return {"problems": len(problems), "plots": {k: str(v) for k, v in plots.items()},
            "wandb_dir": str(where) if where else None,
            "refine_overall": {n: m["overall"] for n, m in metrics["refine"].items()}}


def _hard_accuracy(method: str, samples: dict, k: int, hard: list[str], difficulty: dict) -> float | None:
    from evaluation.voting import choose

    picked = [choose("majority" if method == "refine_then_majority" else method, s, k) for pid, s in samples.items()
              if not hard or str(difficulty[pid]) in hard]
    return round(sum(picked) / len(picked), 4) if picked else None


def _tables(metrics: dict, critics: dict, ks: list[int], rounds: int, hard: list[str]) -> dict[str, str]:
    from evaluation import format_table

    levels = list(next(iter(metrics["refine"].values()))["by_round"]["R=0"])
    rows = {}
    for name, m in metrics["refine"].items():
        for r in range(rounds + 1):
            if name == "none" and r > 0:
                continue
            label = "actor alone (greedy)" if name == "none" else f"{CRITIC_LABELS[name]}, {r} round(s)"
            if r == 0 and name != "none":
                continue
            rows[label] = m["by_round"][f"R={r}"]
    refine_md = format_table(rows, levels, title="Critique -> refine: accuracy by difficulty (greedy actor; "
                                                 f"refinements at temperature {metrics['refine_temperature']:g})")
    fix_lines = ["| critic | " + " | ".join(f"fixed / broken, round {r}" for r in range(1, rounds + 1)) + " |",
                 "|" + "---|" * (rounds + 1)]
    for name, m in metrics["refine"].items():
        if name != "none":
            fix_lines.append(f"| {CRITIC_LABELS[name]} | " + " | ".join(
                f"{m['fixed'][f'R={r}']} / {m['broken'][f'R={r}']}" for r in range(1, rounds + 1)) + " |")
    scale_head = "| method | " + " | ".join(f"k={k}" for k in ks) + " |"
    scale = ["**Parallel scaling: accuracy (all levels) by number of samples k**", "", scale_head,
             "|" + "---|" * (len(ks) + 1)]
    for critic, curves in metrics["scaling"].items():
        for method, by_k in curves.items():
            label = method if critic == "no critic" else f"{method} ({CRITIC_LABELS.get(critic, critic)})"
            scale.append(f"| {label} | " + " | ".join(f"{by_k[f'k={k}']['overall']:.3f}" for k in ks) + " |")
    budget = [f"**At equal generated tokens, levels {', '.join(hard) or 'all'}: method vs plain majority voting "
              f"with as many samples as the same tokens buy**", "",
              "| critic | method | accuracy | tokens / problem | majority, same tokens (k) | scored tokens / problem "
              "| majority, same tokens counting the scored ones (k) |", "|---|---|---|---|---|---|---|"]

    def matched(b: dict) -> str:
        return f"{b['accuracy']:.3f} (k={b['k']}{', all drawn' if b['capped'] else ''})"

    for critic, entries in metrics["budget"].items():
        for key, e in entries.items():
            budget.append(f"| {CRITIC_LABELS[critic]} | {key} | {e['accuracy_hard']:.3f} | {e['tokens']:.0f} | "
                          f"{matched(e['majority_same_tokens_hard'])} | {e['scored_tokens']:.0f} | "
                          f"{matched(e['majority_same_tokens_incl_scored_hard']) if e['scored_tokens'] else '–'} |")
    return {"refine": refine_md, "fix_break": "**Fixes and breaks per refinement round**\n\n" + "\n".join(fix_lines),
            "scaling": "\n".join(scale), "budget": "\n".join(budget)}


def _plots(metrics: dict, critics: dict, ks: list[int], out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for critic, curves in metrics["scaling"].items():
        for method, by_k in curves.items():
            label = method if critic == "no critic" else f"{method} ({CRITIC_LABELS.get(critic, critic)})"
            ax.plot(ks, [by_k[f"k={k}"]["overall"] for k in ks], marker="o", label=label,
                    linestyle="--" if method == "pass@k" else "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem (k)")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy vs k, by selection method")
    ax.legend(fontsize=6)
    fig.tight_layout()
    paths["accuracy_vs_k"] = out_dir / "accuracy_vs_k.png"
    fig.savefig(paths["accuracy_vs_k"], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, m in metrics["refine"].items():
        last = max(int(r.split("=")[1]) for r in m["by_round"])
        table = m["by_round"][f"R={last}" if name != "none" else "R=0"]
        levels = list(table)
        ax.plot([int(x) for x in levels], [table[x]["accuracy"] for x in levels], marker="o",
                label="actor alone" if name == "none" else f"{CRITIC_LABELS[name]}, {last} rounds")
    ax.set_xlabel("difficulty (steps)")
    ax.set_ylabel("accuracy")
    ax.set_title("Critique -> refine: accuracy by difficulty, by critic")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths["accuracy_by_difficulty"] = out_dir / "accuracy_by_difficulty.png"
    fig.savefig(paths["accuracy_by_difficulty"], dpi=120)
    plt.close(fig)
    return paths


def _flat(metrics: dict) -> dict[str, float]:
    flat: dict[str, float] = {}
    for name, m in metrics["refine"].items():
        for r, v in m["overall"].items():
            flat[f"refine/{name}/{r}"] = v["accuracy"]
    for critic, curves in metrics["scaling"].items():
        for method, by_k in curves.items():
            for k, v in by_k.items():
                flat[f"scaling/{critic}/{method}/{k}"] = v["overall"]
    return flat
