"""Every table and plot the stages write: stages compute metrics, this module words and draws them.

Tables are markdown (the results format keeps them beside the JSON metrics); plots are PNGs under the run's
``results/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["CRITIC_COLUMNS", "calibration_table", "critic_confusion_plot", "format_critic_table", "format_table",
           "self_improve_plot", "self_improve_tables", "test_time_plots", "test_time_scalars", "test_time_tables",
           "tokens_plot"]


def format_table(rows: dict[str, dict[str, Any]], columns: Sequence[str], title: str = "") -> str:
    """A markdown table: one row per entry of ``rows``, one column per difficulty (``accuracy`` cells)."""
    head = "| " + " | ".join(["", *columns]) + " |"
    sep = "|" + "---|" * (len(columns) + 1)
    lines = [f"**{title}**", ""] if title else []
    lines += [head, sep]
    for name, cells in rows.items():
        vals = []
        for c in columns:
            cell = cells.get(c)
            vals.append(f"{cell['accuracy']:.2f}" if cell and cell.get("accuracy") is not None else "–")
        lines.append("| " + " | ".join([name, *vals]) + " |")
    return "\n".join(lines)


CRITIC_COLUMNS = [
    ("natural", "balanced_accuracy", "natural: bal. acc."),
    ("natural", "f1_wrong", "natural: F1 wrong"),
    ("natural", "location_accuracy", "natural: located"),
    ("injected", "balanced_accuracy", "injected: bal. acc."),
    ("injected", "location_accuracy", "injected: located"),
    ("greedy", "recall_wrong", "greedy mistakes caught"),
    ("greedy", "location_accuracy", "greedy: located"),
    ("greedy", "recall_right", "greedy right passed"),
]


def format_critic_table(scores: dict[str, dict[str, dict[str, Any]]], title: str = "") -> str:
    """``scores[critic][subset] -> score_critic(...)`` as a markdown table."""
    head = "| critic | " + " | ".join(c[2] for c in CRITIC_COLUMNS) + " |"
    lines = [f"**{title}**", ""] if title else []
    lines += [head, "|" + "---|" * (len(CRITIC_COLUMNS) + 1)]
    for name, by_subset in scores.items():
        cells = []
        for subset, key, _ in CRITIC_COLUMNS:
            value = by_subset.get(subset, {}).get(key)
            cells.append("–" if value is None else f"{value:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def processbench_table(scores: dict[str, dict[str, Any]], title: str) -> str:
    """``scores[critic] -> score_processbench(...)`` (or ``{"error": ...}``) as a markdown table."""
    lines = [f"**{title}**", "", "| critic | accuracy, erroneous | accuracy, correct | F1 | abstained |",
             "|---|---|---|---|---|"]
    for name, r in scores.items():
        if "error" in r:
            lines.append(f"| {name} | not run: {r['error']} | | | |")
            continue
        cells = ["–" if r[k] is None else f"{r[k]:.3f}" for k in ("accuracy_erroneous", "accuracy_correct", "f1")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['abstained']} |")
    return "\n".join(lines)


def calibration_table(rows: dict[str, dict[str, Any]], levels: Sequence[int], n: int, wrong: int, best: float,
                      configured: float) -> str:
    """The calibrate_critic stage's table: each bound beside the trained critic's own verdicts."""
    lines = [f"**Likelihood-gated verdicts on training-split problems, levels {', '.join(map(str, levels))} "
             f"({n} natural and greedy solutions, {wrong} wrong)**", "",
             "| trained critic | bal. acc. | wrong caught | right passed | located | tokens / solution: generated, "
             "scored |", "|---|---|---|---|---|---|"]
    for label, r in rows.items():
        cells = [r[k] for k in ("balanced_accuracy", "recall_wrong", "recall_right", "location_accuracy")]
        lines.append(f"| {label} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in cells)
                     + f" | {r['generated_tokens_per_solution']:.1f}, {r['scored_tokens_per_solution']:.1f} |")
    lines += ["", f"Best balanced accuracy: accept_probability={best:g} (configured: {configured:g})"]
    return "\n".join(lines)


def test_time_tables(metrics: dict, labels: dict[str, str], ks: list[int], rounds: int, hard: list[str]) -> dict[str, str]:
    """The test-time stage's tables: refine rounds by difficulty, fixes and breaks, scaling in k, equal budget."""
    levels = list(next(iter(metrics["refine"].values()))["by_round"]["R=0"])
    rows = {}
    for name, m in metrics["refine"].items():
        for r in range(rounds + 1):
            if name == "none" and r > 0:
                continue
            label = "actor alone (greedy)" if name == "none" else f"{labels[name]}, {r} round(s)"
            if r == 0 and name != "none":
                continue
            rows[label] = m["by_round"][f"R={r}"]
        if name != "none" and rounds > 0 and "keep_first" in m:
            rows[f"{labels[name]}, {rounds} round(s), first attempt kept unless a refinement is accepted"] = \
                m["keep_first"]["by_round"][f"R={rounds}"]
    refine_md = format_table(rows, levels, title="Critique -> refine: accuracy by difficulty (greedy actor; "
                                                 f"refinements at temperature {metrics['refine_temperature']:g})")
    fix_lines = ["| critic | " + " | ".join(f"fixed / broken, round {r}" for r in range(1, rounds + 1))
                 + f" | change after round {rounds}, ± 95 % (paired by problem) | the same, first attempt kept |",
                 "|" + "---|" * (rounds + 3)]
    change = lambda c: f"{c['change']:+.3f} ± {c['ci95']:.3f}" if c else "–"  # noqa: E731
    for name, m in metrics["refine"].items():
        if name != "none":
            last = f"R={rounds}"  # runs from before the change was recorded have none
            fix_lines.append(f"| {labels[name]} | " + " | ".join(
                f"{m['fixed'][f'R={r}']} / {m['broken'][f'R={r}']}" for r in range(1, rounds + 1))
                + f" | {change(m.get('change', {}).get(last))} | {change(m['keep_first'].get('change', {}).get(last))} |")
    scale_head = "| method | " + " | ".join(f"k={k}" for k in ks) + " |"
    scale = ["**Parallel scaling: accuracy (all levels) by number of samples k**", "", scale_head,
             "|" + "---|" * (len(ks) + 1)]
    for critic, curves in metrics["scaling"].items():
        for method, by_k in curves.items():
            label = method if critic == "no critic" else f"{method} ({labels.get(critic, critic)})"
            scale.append(f"| {label} | " + " | ".join(f"{by_k[f'k={k}']['overall']:.3f}" for k in ks) + " |")
    budget = [f"**At equal generated tokens, levels {', '.join(hard) or 'all'}: method vs plain majority voting "
              f"with as many samples as the same tokens buy**", "",
              "| critic | method | accuracy | tokens / problem | majority, same tokens (k) | scored tokens / problem "
              "| majority, same tokens counting the scored ones (k) |", "|---|---|---|---|---|---|---|"]

    def matched(b: dict) -> str:
        return f"{b['accuracy']:.3f} (k={b['k']}{', all drawn' if b['capped'] else ''})"

    for critic, entries in metrics["budget"].items():
        for key, e in entries.items():
            budget.append(f"| {labels[critic]} | {key} | {e['accuracy_hard']:.3f} | {e['tokens']:.0f} | "
                          f"{matched(e['majority_same_tokens_hard'])} | {e['scored_tokens']:.0f} | "
                          f"{matched(e['majority_same_tokens_incl_scored_hard']) if e['scored_tokens'] else '–'} |")
    return {"refine": refine_md, "fix_break": "**Fixes and breaks per refinement round**\n\n" + "\n".join(fix_lines),
            "scaling": "\n".join(scale), "budget": "\n".join(budget)}


def test_time_plots(metrics: dict, labels: dict[str, str], ks: list[int], out_dir: Path) -> dict[str, Path]:
    """Accuracy vs k by selection method, and accuracy by difficulty after the refine rounds, as PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for critic, curves in metrics["scaling"].items():
        for method, by_k in curves.items():
            label = method if critic == "no critic" else f"{method} ({labels.get(critic, critic)})"
            ax.plot(ks, [by_k[f"k={k}"]["overall"] for k in ks], marker="o", label=label,
                    linestyle="--" if method == "pass@k" else "-")
    ax.set_xscale("log", base=2)
    paths["accuracy_vs_k"] = _save(fig, ax, "samples per problem (k)", "Accuracy vs k, by selection method", 6,
                                   out_dir / "accuracy_vs_k.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, m in metrics["refine"].items():
        last = max(int(r.split("=")[1]) for r in m["by_round"])
        table = m["by_round"][f"R={last}" if name != "none" else "R=0"]
        levels = list(table)
        ax.plot([int(x) for x in levels], [table[x]["accuracy"] for x in levels], marker="o",
                label="actor alone" if name == "none" else f"{labels[name]}, {last} rounds")
    paths["accuracy_by_difficulty"] = _save(fig, ax, "difficulty (steps)",
                                            "Critique -> refine: accuracy by difficulty, by critic", 7,
                                            out_dir / "accuracy_by_difficulty.png")
    return paths


def _save(fig: Any, ax: Any, xlabel: str, title: str, legend_size: int, path: Path) -> Path:
    """Label an accuracy plot, write it as a PNG and close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def test_time_scalars(metrics: dict) -> dict[str, float]:
    """The test-time metrics as flat scalars (for W&B)."""
    flat: dict[str, float] = {}
    for name, m in metrics["refine"].items():
        for r, v in m["overall"].items():
            flat[f"refine/{name}/{r}"] = v["accuracy"]
    for critic, curves in metrics["scaling"].items():
        for method, by_k in curves.items():
            for k, v in by_k.items():
                flat[f"scaling/{critic}/{method}/{k}"] = v["overall"]
    return flat


def self_improve_tables(histories: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Held-out accuracy by difficulty at the start and after the last iteration; one row per iteration."""
    levels = list(next(iter(histories.values()))[0]["heldout"]["by_difficulty"])
    rows = {}
    for name, history in histories.items():
        if not rows:
            rows["start (warm-up actor)"] = {k: {"accuracy": v} for k, v in history[0]["heldout"]["by_difficulty"].items()}
        last = history[-1]
        rows[f"{name}, after {last['iteration']} iterations"] = {
            k: {"accuracy": v} for k, v in last["heldout"]["by_difficulty"].items()}
    held = format_table(rows, levels, title="Self-improvement: held-out greedy accuracy by difficulty")
    lines = ["**Per iteration, at equal generation budget**", "",
             "| algorithm | iteration | held-out | exploration | diversity | generations | tokens | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for name, history in histories.items():
        for h in history[1:]:
            lines.append(f"| {name} | {h['iteration']} | {h['heldout']['overall']:.3f} | {h.get('exploration', 0):.3f} | "
                         f"{h.get('diversity', 0):.2f} | {h.get('generations', '–')} | {h.get('tokens', '–')} | "
                         f"{h['seconds']} |")
    return {"heldout": held, "iterations": "\n".join(lines)}


def tokens_plot(scaling: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str], path: Path) -> Path:
    """Accuracy against generated tokens per problem, one curve per selection method over k: methods compared at
    equal budget are the points at the same x."""
    fig, ax = plt.subplots(figsize=(8, 5))
    methods = sorted({m for curves in scaling.values() for m in curves if m != "pass@k"})  # pass@k: a bound
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    styles = ["-", "--", ":", "-."]
    for j, (critic, curves) in enumerate(scaling.items()):
        for method, by_k in curves.items():
            points = [(v["mean_tokens"], v["overall"]) for v in by_k.values() if v.get("mean_tokens") is not None]
            if method in colors and points:
                label = method if critic == "no critic" else f"{method} ({labels.get(critic, critic)})"
                ax.plot(*zip(*sorted(points)), marker="os^Dv"[j % 5], linestyle=styles[j % 4], color=colors[method],
                        label=label)
    ax.set_xscale("log", base=2)
    return _save(fig, ax, "generated tokens per problem (actor and critic)",
                 "Accuracy vs tokens: colour = method, line = critic", 6, path)


def self_improve_plot(histories: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Held-out accuracy, exploration and diversity per iteration, one line per algorithm."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for name, history in histories.items():
        its = [h["iteration"] for h in history]
        axes[0].plot(its, [h["heldout"]["overall"] for h in history], marker="o", label=name)
        axes[1].plot(its[1:], [h.get("exploration", 0) for h in history[1:]], marker="o", label=name)
        axes[2].plot(its[1:], [h.get("diversity", 0) for h in history[1:]], marker="o", label=name)
    for ax, title, ylabel in zip(axes, ("held-out greedy accuracy", "exploration (problems solved)",
                                        "diversity (distinct solutions / problem)"), ("accuracy", "share", "solutions")):
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def critic_confusion_plot(scores: dict[str, dict[str, dict[str, Any]]], subset: str, path: Path) -> Path:
    """Each critic's verdicts on one solution set as stacked bars: wrong solutions caught / missed, right ones
    passed / flagged (a false alarm)."""
    names = [n for n, by_set in scores.items() if subset in by_set]
    parts = {"wrong, caught": [], "wrong, missed": [], "right, passed": [], "right, flagged": []}
    for n in names:
        c = scores[n][subset]
        right = c["n"] - c["wrong"]
        parts["wrong, caught"].append(c["caught"])
        parts["wrong, missed"].append(c["wrong"] - c["caught"])
        parts["right, passed"].append(right - c["false_alarms"])
        parts["right, flagged"].append(c["false_alarms"])
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 2.0))
    left = [0] * len(names)
    for (label, values), color in zip(parts.items(), ("#2a7", "#c44", "#59d", "#e94")):
        ax.barh(names, values, left=left, label=label, color=color)
        left = [a + b for a, b in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("solutions")
    ax.set_title(f"Critic verdicts on the {subset} set")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.1 - 0.3 / max(1, len(names))))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
