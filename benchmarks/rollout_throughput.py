"""Rollout throughput: completion tokens per second, all measured in one run on the same problems, of

  (a) raw batched ``model.generate`` on the solve prompts (the library's own loop, no environment),
  (b0) the batched rollout loop (environment + actor + oracle critic + refinement turns) on ``HFBackend`` with
       ``engine=generate``: batches of ``--batch`` rows, each until its longest row ends (the loop before the
       slot engine),
  (b) the same rollout on ``engine=slots`` (agents/backends/slots.py: ``--batch`` rows decode together and a row
      that ends is refilled at once), at each ``--slots`` size, on the slot engine's lean forward pass
      (agents/backends/fused.py) with ragged attention (each run of slots reads the columns from its oldest row's
      first on), once at ``--full-width-slots`` reading every column (``ragged=False``, the pass before), and once
      at the first size on the model's own forward (``fused=False``),
  (c) the same loop one episode at a time (one live episode, generation batch 1),
  (d) the (b) rollout split over ``--workers`` Ray rollout workers of one torch thread each (rollout/ray_pool.py,
      ``ray.enabled=true``): the machine's cores as processes instead of as threads of one process. Ray and the
      workers start and stop in the mode's own time; startup (loading the checkpoint, a first small rollout) is
      timed apart and left out of tokens/s, as a run pays it once.

Greedy episodes of (b) and (d) must equal (b0)'s token for token: the table says how many do. Target: (b) >= 2 x (b0).
Every mode runs once per round, ``--repeats`` rounds in turn; a row is its mode's median run (a shared machine's
slow spells hit every mode alike), and the best row's ratio is also given round by round.

    python benchmarks/rollout_throughput.py [--checkpoint checkpoints/tiny-actor] [--problems 512] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from agents.actor import Actor, ActorConfig  # noqa: E402
from agents.backends import SamplingParams  # noqa: E402
from agents.backends.hf import HFBackend  # noqa: E402
from agents.backends.slots import SlotDecoder  # noqa: E402
from agents.prompts import PromptTemplate  # noqa: E402
from critics import OracleCritic  # noqa: E402
from critics.registry import CriticConfig  # noqa: E402
from envs import EnvConfig, SyntheticArithmetic  # noqa: E402
from rollout import RolloutStats, rollout  # noqa: E402
from rollout.ray_pool import RayConfig, RayRolloutPool, WorkerSpec  # noqa: E402
from storage import atomic_write_json  # noqa: E402


def raw_generate(backend: HFBackend, prompts: list[str], batch: int, max_new_tokens: int) -> tuple[int, float]:
    """Plain ``model.generate`` over left-padded batches of ``batch`` prompts: tokens (up to EOS) and seconds."""
    tok, model = backend.tokenizer, backend.model
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(prompts), batch):
        enc = tok(prompts[i:i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc.to(backend.device), max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        for row in new.tolist():
            tokens += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    return tokens, time.perf_counter() - start


def _timed(spent: dict, key, fn):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        spent[key(*args, **kwargs)] += time.perf_counter() - start
        return out
    return timed


def _rollout(backend: HFBackend, problems, template, sampling, env_config, envs: int):
    """The rollout's numbers, with where its time went: forward passes of one token per row (decode), of whole
    prompts (prefill), and everything else (environment, critic, parsing, scheduling)."""
    stats, spent = RolloutStats(), {"decode_s": 0.0, "prefill_s": 0.0}
    passes = {"_decode_pass": SlotDecoder._decode_pass, "_prefill_pass": SlotDecoder._prefill_pass}
    shape = {"passes": 0, "rows": 0, "row_columns": 0, "own_columns": 0, "prefills": 0}
    timed_decode = _timed(spent, lambda *a, **k: "decode_s", passes["_decode_pass"])

    def decode_pass(self, cache, ids, positions, mask, segments=None):
        """Also counts what the pass read: rows, the columns attention read (each ragged segment its own), and the
        columns that are a row's own (unmasked)."""
        rows, width = mask.shape[0], mask.shape[-1]
        shape["passes"] += 1
        shape["rows"] += rows
        shape["row_columns"] += sum((b - a) * (width - m) for a, b, m in segments) if segments else rows * width
        shape["own_columns"] += int((mask == 0).sum())
        return timed_decode(self, cache, ids, positions, mask, segments)

    timed_prefill = _timed(spent, lambda *a, **k: "prefill_s", passes["_prefill_pass"])

    def prefill_pass(self, *args):
        shape["prefills"] += 1
        return timed_prefill(self, *args)

    if backend.engine == "slots":  # the slot engine's two passes, whichever forward they run on
        SlotDecoder._decode_pass = decode_pass
        SlotDecoder._prefill_pass = prefill_pass
    else:
        backend.model.forward = _timed(
            spent, lambda *a, **k: "decode_s" if k["input_ids"].shape[1] == 1 else "prefill_s", backend.model.forward)
    try:
        records = rollout(problems, Actor(backend, template, sampling), OracleCritic(), env_config, batch_size=envs,
                          stats=stats)
    finally:
        for name, method in passes.items():
            setattr(SlotDecoder, name, method)
        backend.model.__dict__.pop("forward", None)  # the model's own method again
    row = {"tokens": stats.completion_tokens, "seconds": round(stats.seconds, 2),
           "tokens_per_s": round(stats.tokens_per_second, 1), "episodes": stats.episodes,
           "generate_calls": stats.generate_calls, **{k: round(v, 2) for k, v in spent.items()}}
    if shape["passes"]:
        row |= {"prefill_passes": shape["prefills"], "decode_passes": shape["passes"],
                "mean_rows": round(shape["rows"] / shape["passes"], 1),
                "mean_columns": round(shape["row_columns"] / shape["rows"], 1),
                "own_column_share": round(shape["own_columns"] / shape["row_columns"], 3)}
    return row, [[g.completion_ids for g in r.generations] for r in records]


def pool_rollout(args, problems, sampling: SamplingParams, env_config: EnvConfig) -> tuple[dict, list]:
    """(d): Ray and its workers start, warm up, roll out, and stop, so no Ray process runs during the other modes."""
    import ray

    start = time.perf_counter()
    spec = WorkerSpec(actor_path=args.checkpoint, actor=ActorConfig(engine="slots", number_format="reversed"),
                      sampling=sampling, critics={"oracle": CriticConfig(name="oracle")}, env=asdict(env_config),
                      batch_size=args.worker_slots, threads=1)
    pool = RayRolloutPool(RayConfig(num_workers=args.workers), spec)
    try:
        pool.rollout(problems[: 2 * args.workers], critic="oracle")  # every worker has loaded and run once
        startup = time.perf_counter() - start
        start = time.perf_counter()
        records = pool.rollout(problems, critic="oracle")
        seconds = time.perf_counter() - start
    finally:
        pool.shutdown()
        ray.shutdown()
    tokens = sum(len(g.completion_ids) for r in records for g in r.generations)
    row = {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
           "episodes": len(records), "startup_s": round(startup, 2)}
    return row, [[g.completion_ids for g in r.generations] for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "tiny-actor"))
    parser.add_argument("--problems", type=int, default=512)
    parser.add_argument("--single-problems", type=int, default=48, help="episodes for the one-at-a-time loop")
    parser.add_argument("--batch", type=int, default=64, help="generation batch of (a) and (b0)")
    parser.add_argument("--slots", type=int, nargs="+", default=[64, 128, 256], help="slot counts of (b)")
    parser.add_argument("--full-width-slots", type=int, default=128,
                        help="slot count of the lean pass reading every column (ragged=False); 0: no such row")
    parser.add_argument("--envs", type=int, default=256, help="live episodes in the batched rollouts")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="Ray rollout workers of (d), one thread each; 0: no (d)")
    parser.add_argument("--worker-slots", type=int, default=128, help="slots (and live episodes) of each (d) worker")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every mode; each row is its median run")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rollout_throughput.json"))
    args = parser.parse_args()

    reference = HFBackend(args.checkpoint, batch_size=args.batch, threads=args.threads, engine="generate")
    template = PromptTemplate(number_format="reversed")
    problems = SyntheticArithmetic(size=args.problems, min_steps=1, max_steps=8, split="test", seed=123)[:]
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens)
    env_config = EnvConfig(action_unit="solution", critique_timing="final", max_refinements=1)

    raw_generate(reference, [template.prompt(p.question) for p in problems[: args.batch]], args.batch, 8)  # warm-up
    solve_prompts = [template.prompt(p.question) for p in problems]

    def raw_row() -> dict:
        tokens, seconds = raw_generate(reference, solve_prompts, args.batch, args.max_new_tokens)
        return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}

    def rollout_row(backend: HFBackend, subset=problems, envs: int = args.envs):
        return lambda: _rollout(backend, subset, template, sampling, env_config, envs)

    modes = {"a_raw_generate": lambda: (raw_row(), None), "b0_rollout_generate": rollout_row(reference)}
    for slots in args.slots:
        modes[f"b_rollout_slots_{slots}"] = rollout_row(
            HFBackend(reference.model, reference.tokenizer, batch_size=slots, engine="slots"))
        if slots == args.slots[0]:
            modes[f"b_rollout_slots_{slots}_library_forward"] = rollout_row(
                HFBackend(reference.model, reference.tokenizer, batch_size=slots, engine="slots", fused=False))
        if slots == args.full_width_slots:
            modes[f"b_rollout_slots_{slots}_full_width"] = rollout_row(
                HFBackend(reference.model, reference.tokenizer, batch_size=slots, engine="slots", ragged=False))
    modes["c_one_at_a_time"] = rollout_row(HFBackend(reference.model, reference.tokenizer, batch_size=1, engine="slots"),
                                           problems[: args.single_problems], 1)
    if args.workers:
        modes[f"d_ray_{args.workers}_workers"] = lambda: pool_rollout(args, problems, sampling, env_config)
    # every mode once per round, rounds one after another: a slow spell of a shared machine hits every mode
    runs: dict[str, list[dict]] = {name: [] for name in modes}
    expected = None
    for _ in range(args.repeats):
        for name, mode in modes.items():
            row, got = mode()
            if name == "b0_rollout_generate":
                expected = got
            elif name.startswith(("b_", "d_")):
                row["identical_episodes"] = sum(a == b for a, b in zip(got, expected))
            runs[name].append(row)
    rows = {}
    for name, seen in runs.items():  # each mode's median run, with the range of its rounds
        row = dict(sorted(seen, key=lambda r: r["seconds"])[len(seen) // 2])
        if len(seen) > 1:
            row["tokens_per_s_range"] = [min(r["tokens_per_s"] for r in seen), max(r["tokens_per_s"] for r in seen)]
            if "identical_episodes" in row:
                row["identical_episodes"] = min(r["identical_episodes"] for r in seen)
        rows[name] = row

    base = rows["b0_rollout_generate"]["tokens_per_s"]
    ratios = {f"{name}_over_b0": round(row["tokens_per_s"] / base, 2) for name, row in rows.items()
              if name != "b0_rollout_generate"}
    def best_of(prefix: str) -> str | None:
        return max((name for name in rows if name.startswith(prefix)), key=lambda n: rows[n]["tokens_per_s"], default=None)

    def within_rounds(name: str) -> list[float]:  # the ratio within each round (the two runs nearest in time)
        return [round(r["tokens_per_s"] / b["tokens_per_s"], 2) for r, b in zip(runs[name], runs["b0_rollout_generate"])]

    best, workers = best_of("b_"), best_of("d_")
    round_ratios = within_rounds(best)
    result = {"config": vars(args) | {"device": str(reference.device), "torch_threads": torch.get_num_threads()},
              "rows": rows, "ratios": ratios, "best": best, "round_ratios": round_ratios, "targets": {"b_over_b0": 2.0}}
    if workers:
        result["workers_round_ratios"] = within_rounds(workers)
    print(f"{'mode':<40}{'tokens':>10}{'seconds':>10}{'tokens/s':>12}{'x (b0)':>9}{'identical':>11}{'decode s':>10}"
          f"{'prefill s':>10}")
    for name, row in rows.items():
        ratio = ratios.get(f"{name}_over_b0", 1.0)
        same = row.get("identical_episodes", "")
        same = f"{same}/{row['episodes']}" if same != "" else ""
        print(f"{name:<40}{row['tokens']:>10}{row['seconds']:>10}{row['tokens_per_s']:>12}{ratio:>9}{same:>11}"
              f"{row.get('decode_s', ''):>10}{row.get('prefill_s', ''):>10}")
    for name, row in rows.items():
        if "decode_passes" in row:
            print(f"{name}: {row['prefill_passes']} prefill passes; {row['decode_passes']} decode passes of "
                  f"{row['mean_rows']} rows over {row['mean_columns']} columns, {row['own_column_share']:.0%} of "
                  "them a row's own")
    print(f"best: {best}, {ratios[best + '_over_b0']} x (b0) (target >= 2; medians of {args.repeats} rounds; "
          f"within each round: {', '.join(map(str, round_ratios))})")
    if workers:
        print(f"{workers}: {ratios[workers + '_over_b0']} x (b0) (within each round: "
              f"{', '.join(map(str, result['workers_round_ratios']))}); startup {rows[workers]['startup_s']} s")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
