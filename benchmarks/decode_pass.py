"""Where a decode pass of the slot engine spends its time: one forward pass of ``slots`` rows over ``columns`` cache
columns (the tiny actor, a :class:`~agents.backends.slots.SlotCache`) on the model's forward and on the slot
engine's lean pass (agents/backends/fused.py), and one layer's attention over the same keys and values, alone
(they stay in the CPU's cache) and rotating over every layer's (as in a real pass).

    python benchmarks/decode_pass.py [--slots 16 32 64 128] [--columns 20 60 167] [--compile]

Writes ``benchmarks/results/decode_pass.json`` and prints the table. ``--compile`` adds ``torch.compile`` of the
forward (dynamic shapes), with its compile time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from agents.backends.fused import FusedForward  # noqa: E402
from agents.backends.slots import SlotCache  # noqa: E402
from storage import atomic_write_json  # noqa: E402


def _ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return round((time.perf_counter() - start) / repeats * 1000, 3)


def measure(model, compiled, slots: int, columns: int, cache_columns: int, repeats: int) -> dict:
    """One row of the table: a decode pass of ``slots`` rows reading ``columns`` columns, and one layer's
    attention over the same keys and values."""
    cfg = model.config
    heads, head_dim, layers = cfg.num_key_value_heads, cfg.head_dim, cfg.num_hidden_layers
    cache = SlotCache(layers, slots, columns=max(cache_columns, columns))
    for layer in cache.layers:
        layer.lazy_initialization(torch.zeros(1, heads, 1, head_dim), torch.zeros(1, heads, 1, head_dim))
    token = torch.randint(3, cfg.vocab_size, (slots, 1), generator=torch.Generator().manual_seed(0))
    position, mask = torch.full((slots, 1), 100), torch.zeros(slots, 1, 1, columns)

    def forward(fn):
        cache.column = columns - 1
        return fn(input_ids=token, attention_mask=mask, position_ids=position, use_cache=True, cache=cache)

    row = {"slots": slots, "columns": columns, "pass_ms": _ms(lambda: forward(model.forward), repeats)}
    lean = FusedForward(model)
    cache.column = columns - 1
    row["lean_pass_ms"] = _ms(lambda: lean(token, position, mask, lambda i, k, v: cache.layers[i].update(k, v)),
                              repeats)
    if compiled is not None:
        row["compiled_pass_ms"] = _ms(lambda: forward(compiled), repeats)
    query = torch.randn(slots, 1, heads, head_dim).transpose(1, 2)
    kv = [(layer.keys[:, :, :columns], layer.values[:, :, :columns]) for layer in cache.layers]
    turn = [0]

    def rotating():
        keys, values = kv[turn[0] % layers]
        turn[0] += 1
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)

    row["attention_one_layer_ms"] = _ms(lambda: F.scaled_dot_product_attention(query, *kv[0], attn_mask=mask),
                                        repeats * 4)
    row["attention_rotating_ms"] = _ms(rotating, repeats * 4)
    row["us_per_row"] = round(row["pass_ms"] * 1000 / slots)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "tiny-actor"))
    parser.add_argument("--slots", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--columns", type=int, nargs="+", default=[20, 60, 167])
    parser.add_argument("--cache-columns", type=int, default=300, help="columns the cache holds (the benchmark "
                        "rollout's: longest prompt + 160 new tokens + margin)")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decode_pass.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint).eval()
    cfg = model.config
    compiled, compile_s = None, None
    if args.compile:
        compiled = torch.compile(model.forward, dynamic=True)
    with torch.inference_mode():
        if compiled is not None:  # the first call compiles
            started = time.perf_counter()
            measure(model, compiled, args.slots[0], args.columns[0], args.cache_columns, 1)
            compile_s = round(time.perf_counter() - started, 1)
        rows = [measure(model, compiled, slots, columns, args.cache_columns, args.repeats)
                for slots in args.slots for columns in args.columns]
    result = {"config": vars(args) | {"layers": cfg.num_hidden_layers, "kv_heads": cfg.num_key_value_heads,
                                      "head_dim": cfg.head_dim,
                                      "torch_threads": torch.get_num_threads()},
              "compile_s": compile_s, "rows": rows}
    keys = [k for k in rows[0] if k not in ("slots", "columns")]
    print(f"{'slots':>6}{'columns':>9}" + "".join(f"{k:>24}" for k in keys))
    for row in rows:
        print(f"{row['slots']:>6}{row['columns']:>9}" + "".join(f"{row[k]:>24}" for k in keys))
    if compile_s is not None:
        print(f"torch.compile took {compile_s} s")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
