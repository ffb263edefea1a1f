"""The run's report, ``<run_dir>/report.md`` (and ``report.html``, the same for a browser): what was run, each
stage's time and headline table, the plots a person would rather look at, and a few sentences of what the numbers
say -- readable without W&B.

It is rebuilt from the run folder (``results/*.json``, ``stages/*.json``) after every ``train.py`` call, so a
resumed or partly cached run gets one report of everything it holds. Plots are PNGs under ``results/``.
"""

from __future__ import annotations

import datetime as _dt
import html
import importlib.metadata
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from critics.registry import CRITICS
from evaluation.report import critic_confusion_plot, self_improve_plot, tokens_plot
from pipeline.context import Run
from pipeline.schema import RunConfig
from storage import atomic_write_text, read_json

__all__ = ["HEADLINES", "findings", "to_html", "write_report"]

# each stage's headline table (a key of its results' ``tables``; the first one where not named)
HEADLINES = {"eval_test_time": "refine", "self_improve": "heldout", "self_talk": "accuracy"}
_PACKAGES = ("critique-gym", "torch", "transformers", "trl", "peft", "ray", "gymnasium", "math-verify", "wandb")


def _versions() -> str:
    found = []
    for name in _PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _hardware() -> str:
    import torch

    gpu = (f", GPU: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}" if torch.cuda.is_available()
           else ", no GPU")
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores{gpu}, Python {platform.python_version()}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def findings(results: dict[str, dict[str, Any]], labels: dict[str, str] | None = None) -> list[str]:
    """The sentences the numbers say, one per stage that has them; each is computed from the results
    (``labels``: critic names as the tables write them)."""
    labels = labels or {}
    out = []
    if m := results.get("eval_actor", {}).get("metrics"):
        acc = m["accuracy"]
        levels = acc["by_difficulty"]
        first, last = next(iter(levels)), list(levels)[-1]
        line = (f"The actor solves {_pct(acc['overall']['accuracy'])} of the held-out problems greedily "
                f"({_pct(levels[first]['accuracy'])} at difficulty {first}, {_pct(levels[last]['accuracy'])} at {last})")
        if "with_critic" in m:
            line += f"; with critique -> refine by the configured critic, {_pct(m['with_critic']['overall']['accuracy'])}"
        out.append(line + ".")
    if m := results.get("eval_critic", {}).get("metrics"):
        scores = {k: v for k, v in m.get("scores", {}).items() if "natural" in v}
        trained = scores.get("trained critic", {}).get("natural")
        if trained:
            right = trained["n"] - trained["wrong"]
            line = (f"On the actor's own solutions the trained critic catches {trained['caught']} of {trained['wrong']} "
                    f"wrong ones and passes {right - trained['false_alarms']} of {right} right ones (balanced "
                    f"accuracy {trained['balanced_accuracy']})")
            oracle = next((v["natural"] for k, v in scores.items() if k.startswith("oracle")), None)
            out.append(line + (f"; the reference-aware oracle: {oracle['balanced_accuracy']}." if oracle else "."))
    if m := results.get("eval_test_time", {}).get("metrics"):
        refine = m["refine"]
        alone = refine.get("none", {}).get("overall", {}).get("R=0", {}).get("accuracy")
        parts = []
        for name, r in refine.items():
            if name != "none":
                last = max(r["overall"], key=lambda k: int(k.split("=")[1]))
                change = r.get("change", {}).get(last)  # paired by problem; absent for 0 rounds and older runs
                parts.append(f"{labels.get(name, name)} {_pct(r['overall'][last]['accuracy'])} "
                             f"({last.replace('R=', '')} round(s)"
                             + (f"; {100 * change['change']:+.1f} ± {100 * change['ci95']:.1f} points)" if change else ")"))
        if parts:
            out.append(f"At test time, critique -> refine (all levels): the actor alone {_pct(alone)}; with "
                       + ", ".join(parts) + ".")
    if m := results.get("self_improve", {}).get("metrics"):
        parts = [f"{name} {h[0]['heldout']['overall']:.3f} -> {h[-1]['heldout']['overall']:.3f} after "
                 f"{h[-1]['iteration']} iteration(s)" for name, h in m["history"].items() if h]
        if parts:
            out.append("Self-improvement, held-out greedy accuracy: " + "; ".join(parts) + ".")
    if m := results.get("self_talk", {}).get("metrics"):
        line = (f"The self-talk model solves {_pct(m['accuracy']['overall']['accuracy'])} of the test-time problems at "
                f"{m['mean_tokens']} tokens each; it flagged {m['flags']} of its own steps and fixed "
                f"{m['corrections']}, and {m['malformed']} of {m['episodes']} transcripts were malformed")
        checks = m.get("checks") or {}
        if checks.get("precision") is not None:
            line += f" (its flags' precision {checks['precision']}, recall {checks['recall']})"
        out.append(line + ".")
    return out


def _plots(results: dict[str, dict[str, Any]], out: Path, labels: dict[str, str]) -> list[tuple[str, Path]]:
    """The report's plots: the test-time stage's own, and those drawn here from the other stages' metrics."""
    plots = []
    if m := results.get("eval_test_time", {}).get("metrics"):
        for name, title in (("accuracy_by_difficulty", "Accuracy by difficulty, per method"),
                            ("accuracy_vs_k", "Accuracy vs k, per method")):
            if (out / f"{name}.png").exists():
                plots.append((title, out / f"{name}.png"))
        plots.append(("Accuracy vs generated tokens (equal budget: the same x)", tokens_plot(m["scaling"], labels,
                                                                                          out / "accuracy_vs_tokens.png")))
    if m := results.get("self_improve", {}).get("metrics"):
        if any(len(h) > 1 for h in m["history"].values()):
            plots.append(("Self-improvement per iteration", self_improve_plot(m["history"], out / "self_improve.png")))
    if m := results.get("eval_critic", {}).get("metrics"):
        scores = {k: v for k, v in m.get("scores", {}).items() if isinstance(v, dict) and "natural" in v}
        if scores:
            plots.append(("Critic verdicts on the actor's own solutions",
                          critic_confusion_plot(scores, "natural", out / "critic_confusion.png")))
    return plots


def write_report(cfg: RunConfig, run_dir: Path, summary: dict[str, dict[str, Any]]) -> Path:
    """Write ``report.md`` for the stages of this call (``summary``: each stage's summary, cached or run)."""
    results = {p.stem: read_json(p) for p in sorted((run_dir / "results").glob("*.json"))}
    run = Run(cfg, run_dir)
    labels = {name: run.label(name) for name in CRITICS.names()}
    plots = _plots(results, run_dir / "results", labels)
    c = asdict(cfg)
    lines = [f"# Run report: {run_dir.name}", "",
             f"Written {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} from `{run_dir}`.", "",
             "## What was run", "",
             f"- stages: {', '.join(cfg.stages)}; seed {cfg.seed}",
             f"- problems: {cfg.problems.name}; critic: {cfg.critic.name}; actor: "
             f"{cfg.actor.model or 'the warm-up checkpoint'} ({cfg.actor.backend} backend); self-improvement: "
             f"{', '.join(cfg.self_improve.algorithms)}",
             f"- the whole config: `{run_dir / 'config.json'}` ({len(c)} sections)",
             f"- software: {_versions()}", f"- hardware: {_hardware()}", ""]
    said = findings(results, labels)
    if said:
        lines += ["## What the numbers say", "", *[f"- {s}" for s in said], ""]
    lines += ["## Stages", "", "| stage | seconds | status |", "|---|---|---|"]
    for name in cfg.stages:
        s = summary.get(name, {})
        status = "cached" if s.get("cached") else ("skipped: " + s["skipped"] if "skipped" in s else "run")
        lines.append(f"| {name} | {s.get('seconds', '–')} | {status} |")
    lines += ["", f"Total: {sum(s.get('seconds', 0) for s in summary.values() if not s.get('cached')):.0f} s "
                  "run in this call (cached stages' times are from when they ran).", ""]
    for name in cfg.stages:
        tables = results.get(name, {}).get("tables") or {}
        if tables:
            key = HEADLINES.get(name, next(iter(tables)))
            lines += [f"## {name}", "", tables.get(key, next(iter(tables.values()))), "",
                      f"All of its tables: `results/{name}.md`.", ""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"**{title}**\n\n![{title}](results/{path.name})\n" for title, path in plots]
    text = "\n".join(lines) + "\n"
    atomic_write_text(run_dir / "report.html", to_html(text, f"Run report: {run_dir.name}"))
    return atomic_write_text(run_dir / "report.md", text)


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
          "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;"
          "text-align:left}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 .2rem}")


def to_html(markdown: str, title: str) -> str:
    """The report as one HTML page beside it (plots linked by the same relative paths), for a browser."""
    from markdown_it import MarkdownIt  # rich's own markdown parser, so no extra dependency

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")
