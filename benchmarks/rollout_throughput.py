"""Rollout throughput: completion tokens per second of

  (a) raw batched ``model.generate`` on the solve prompts (the ceiling),
  (b) the batched rollout loop (environment + actor + oracle critic + refinement turns) at the same generation
      batch: ``--envs`` live episodes feed a backend that keeps ``--batch`` rows generating and refills a row as
      soon as its episode's turn ends,
  (c) the same loop one episode at a time (one live episode, generation batch 1),

all measured in one run on the same problems. Targets: (b) >= 0.85 x (a) at batch 64; (b) >= 10 x (c).

    python benchmarks/rollout_throughput.py [--checkpoint checkpoints/tiny-actor] [--problems 512] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from agents.actor import Actor  # noqa: E402
from agents.backends import SamplingParams  # noqa: E402
from agents.backends.hf import HFBackend  # noqa: E402
from agents.prompts import PromptTemplate  # noqa: E402
from critics import OracleCritic  # noqa: E402
from envs import EnvConfig, SyntheticArithmetic  # noqa: E402
from rollout import RolloutStats, rollout  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "tiny-actor"))
    parser.add_argument("--problems", type=int, default=512)
    parser.add_argument("--single-problems", type=int, default=48, help="episodes for the one-at-a-time loop")
    parser.add_argument("--batch", type=int, default=64, help="generation batch (rows per forward pass)")
    parser.add_argument("--envs", type=int, default=256, help="live episodes in the batched rollout")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--refill-chunk", type=int, default=0, help="tokens per generate call before refilling (0: off)")
    parser.add_argument("--no-sort", action="store_true", help="do not group rows of similar prompt length")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rollout_throughput.json"))
    args = parser.parse_args()

    backend = HFBackend(args.checkpoint, batch_size=args.batch, threads=args.threads, refill_chunk=args.refill_chunk or None,
                        sort_by_length=not args.no_sort)
    template = PromptTemplate(number_format="reversed")
    problems = SyntheticArithmetic(size=args.problems, min_steps=1, max_steps=8, split="test", seed=123)[:]
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens)
    env_config = EnvConfig(action_unit="solution", critique_timing="final", max_refinements=1)

    raw_generate(backend, [template.prompt(p.question) for p in problems[: args.batch]], args.batch, 8)  # warm-up
    raw_tokens, raw_seconds = raw_generate(backend, [template.prompt(p.question) for p in problems], args.batch,
                                           args.max_new_tokens)
    batched = RolloutStats()
    rollout(problems, Actor(backend, template, sampling), OracleCritic(), env_config, batch_size=args.envs,
            stats=batched)
    single = RolloutStats()
    rollout(problems[: args.single_problems], Actor(backend, template, sampling), OracleCritic(), env_config,
            batch_size=1, stats=single)

    rows = {
        "a_raw_generate": {"tokens": raw_tokens, "seconds": round(raw_seconds, 2),
                           "tokens_per_s": round(raw_tokens / raw_seconds, 1)},
        "b_batched_rollout": {"tokens": batched.completion_tokens, "seconds": round(batched.seconds, 2),
                              "tokens_per_s": round(batched.tokens_per_second, 1), "episodes": batched.episodes,
                              "generate_calls": batched.generate_calls},
        "c_one_at_a_time": {"tokens": single.completion_tokens, "seconds": round(single.seconds, 2),
                            "tokens_per_s": round(single.tokens_per_second, 1), "episodes": single.episodes},
    }
    ratios = {
        "b_over_a": round(rows["b_batched_rollout"]["tokens_per_s"] / rows["a_raw_generate"]["tokens_per_s"], 3),
        "b_over_c": round(rows["b_batched_rollout"]["tokens_per_s"] / rows["c_one_at_a_time"]["tokens_per_s"], 2),
        # what batching itself buys on this device: no rollout loop can beat (a)/(c) by much
        "a_over_c": round(rows["a_raw_generate"]["tokens_per_s"] / rows["c_one_at_a_time"]["tokens_per_s"], 2),
    }
    result = {"config": vars(args) | {"device": str(backend.device), "torch_threads": torch.get_num_threads()},
              "rows": rows, "ratios": ratios, "targets": {"b_over_a": 0.85, "b_over_c": 10.0}}
    print(f"{'mode':<22}{'tokens':>10}{'seconds':>10}{'tokens/s':>12}")
    for name, row in rows.items():
        print(f"{name:<22}{row['tokens']:>10}{row['seconds']:>10}{row['tokens_per_s']:>12}")
    print(f"(b)/(a) = {ratios['b_over_a']} (target >= 0.85)   (b)/(c) = {ratios['b_over_c']} (target >= 10)   "
          f"(a)/(c) = {ratios['a_over_c']}")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
