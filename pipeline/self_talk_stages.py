"""The self-talk stage: transcripts from the critique data, the self-talk model trained on them, and its
evaluation beside the test-time table.

1. Read the rows of ``self_talk.sources`` -- ``critique_data``'s critiques and ``self_improve``'s critique-loop
   refinements -- and build transcripts (``self_talk.correction_share`` of them with a fix); what was built and
   dropped, per source, goes to ``self_talk/stats.json``.
2. Fine-tune the run's actor on them (``self_talk/model``).
3. Play the test-time problems greedily with ``action_format="self_talk"``: accuracy by difficulty and tokens,
   its checks' precision and recall and its corrections' outcomes (judged by the oracle on generated problems),
   and, when ``eval_test_time`` measured the same problems, the actor alone and critique -> refine rows beside it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from agents.actor import Actor
from autocritique.pipeline import read_dataset
from critics.base import NullCritic
from critics.oracle import OracleCritic
from evaluation.report import format_table
from evaluation.self_talk import self_talk_summary
from evaluation.tracking import EPISODE_COLUMNS, episode_rows
from pipeline.config import ConfigError
from pipeline.context import Run
from rollout.loop import rollout
from storage import atomic_write_json, atomic_write_jsonl, read_jsonl
from trainers.self_talk import SelfTalkConfig, build_transcripts, paper_rows, train_self_talk, trajectory_rows

__all__ = ["self_talk"]


def _source_rows(run: Run, s: SelfTalkConfig, source: str) -> list[dict[str, Any]]:
    """The critique rows one ``self_talk.sources`` entry gives; a source that has not been built is an error."""
    if source == "rows":
        try:
            return paper_rows(s.rows)
        except (OSError, ValueError) as err:
            raise ConfigError(f"self_talk.rows: {err}") from err
    if source == "critique_data":
        data = run.dir / "critique_data" / "critiques.jsonl"
        if not data.exists():
            raise ConfigError(f"self_talk.sources has critique_data, but {data} is missing (run the critique_data "
                              "stage first, or drop it from self_talk.sources)")
        return read_dataset(data)
    files = sorted((run.dir / "self_improve").glob("critique/iter_*/kept.jsonl"))
    if not files:
        raise ConfigError(f"self_talk.sources has self_improve, but {run.dir / 'self_improve' / 'critique'} holds no "
                          "iteration (run self_improve with the critique algorithm first, or drop it from "
                          "self_talk.sources)")
    return trajectory_rows([row for f in files for _, row in read_jsonl(f)])  # none kept is counted, not an error


def self_talk(run: Run, s: SelfTalkConfig) -> dict[str, Any]:
    try:
        examples, stats = build_transcripts([row for source in s.sources for row in _source_rows(run, s, source)], s)
    except ValueError as err:
        raise ConfigError(f"self_talk: {err}") from err
    out = run.dir / "self_talk"
    atomic_write_jsonl(out / "transcripts.jsonl", examples)
    atomic_write_json(out / "stats.json", stats)
    print(f"[self_talk] {len(examples)} transcripts ({stats['built']}) from {stats['rows']} critique rows "
          f"{stats['by_source']}; dropped {stats['dropped'] or 'none'}")

    actor = run.actor()
    trained = train_self_talk(actor, examples, s, out / "model", stats)

    t = run.cfg.test_time
    per_level = s.problems_per_level or t.problems_per_level
    problems = run.problems("test_time", t.split, per_level, levels=t.levels or run.levels)
    greedy = Actor(actor.backend, actor.template.with_self_talk(),
                   replace(actor.sampling, temperature=0.0, max_new_tokens=s.max_new_tokens))
    env = run.env_config(action_unit="solution", action_format="self_talk", max_refinements=0,
                         max_action_chars=max(run.env_config().action_chars, 8 * s.max_new_tokens))
    records = rollout(problems, greedy, NullCritic(), env, batch_size=run.cfg.actor.batch_size, seed=run.seed)
    metrics = self_talk_summary(records, OracleCritic() if run.generated else None)
    metrics["data"] = {k: v for k, v in stats.items() if k != "config"}
    metrics["train_seconds"] = trained["train_seconds"]
    tables = _tables(run, metrics, per_level == t.problems_per_level)
    for md in tables.values():
        print(md + "\n")
    run.tracker.table("episodes/self_talk", EPISODE_COLUMNS, episode_rows(records[: t.table_episodes]))
    run.write_results("self_talk", {"self_talk": s}, metrics, tables)
    return {"transcripts": len(examples), "built": stats["built"], "model": str(out / "model"),
            "accuracy": metrics["accuracy"]["overall"]["accuracy"], "with_correction": metrics["with_correction"],
            "malformed": metrics["malformed"]}


def _tables(run: Run, m: dict[str, Any], same_problems: bool) -> dict[str, str]:
    levels = list(m["accuracy"]["by_difficulty"])
    rows = {"self-talk model (greedy)": m["accuracy"]["by_difficulty"]}
    cost = [("self-talk model (greedy)", m["accuracy"]["overall"]["accuracy"], m["mean_tokens"])]
    test_time = run.dir / "results" / "eval_test_time.json"
    if same_problems and test_time.exists():
        tt = json.loads(test_time.read_text())["metrics"]
        refine = tt["refine"]
        # equal tokens: plain majority voting with the most samples whose tokens the self-talk model's buy
        majority = tt["scaling"]["no critic"]["majority"]
        within = [k for k, v in majority.items() if v["mean_tokens"] <= m["mean_tokens"]] or [next(iter(majority))]
        k = max(within, key=lambda key: int(key.split("=")[1]))
        label = f"actor, majority@{k.split('=')[1]} (no more tokens than self-talk)"
        rows[label] = {lvl: {"accuracy": acc} for lvl, acc in majority[k]["by_difficulty"].items()}
        cost.append((label, majority[k]["overall"], majority[k]["mean_tokens"]))
        for name, r in refine.items():
            label, key = ("actor alone (greedy)", "R=0") if name == "none" else (f"actor + {run.label(name)}, 1 round",
                                                                                 "R=1")
            if key in r["by_round"]:
                rows[label] = r["by_round"][key]
                cost.append((label, r["overall"][key]["accuracy"], r["mean_tokens"][key]))
    md = format_table(rows, levels, title="Self-talk vs the actor with a critic: accuracy by difficulty"
                                          + ("" if len(rows) > 1 else " (eval_test_time not run on these problems)"))
    tokens = ["**At what cost: accuracy (all levels) and generated tokens per problem (actor and critic)**", "",
              "| method | accuracy | tokens / problem |", "|---|---|---|"]
    tokens += [f"| {label} | {acc:.3f} | {tok if tok is not None else '–'} |" for label, acc, tok in cost]
    checks = m.get("checks")
    own = [f"**The self-talk model's own checks ({m['episodes']} problems: {m['with_correction']} with a correction, "
           f"{m['flags']} steps flagged, {m['malformed']} malformed transcripts)**", ""]
    if checks:
        cells = ["precision", "recall", "fix_right", "wrong_to_right", "right_to_wrong", "wrong_to_wrong",
                 "right_to_right", "missed"]
        own += ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells),
                "| " + " | ".join("–" if checks[c] is None else f"{checks[c]}" for c in cells) + " |"]
    else:
        own.append("(no reference-aware judge for this source: checks are not scored)")
    return {"accuracy": md, "tokens": "\n".join(tokens), "checks": "\n".join(own)}
