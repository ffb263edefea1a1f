"""A lean forward pass of a Llama-style decoder for the slot engine, from the model's own weights.

At the tiny actor's size a forward pass through transformers' modules costs more in Python and small operations
(module calls, mask handling, the rotary table recomputed every pass, the RMSNorm's casts) than in its matrix
products. This pass runs the same arithmetic in the same order on the same weights (so its logits equal the
library's bit for bit, which ``tests/test_slots.py`` checks) with a precomputed rotary table and nothing else:
embedding, per layer norm -> q/k/v -> rotary -> attention -> output projection -> norm -> gated MLP, final norm,
head. It covers the architectures it can reproduce exactly (:func:`supports_fused`); any other model keeps its
own forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["FusedForward", "supports_fused"]

_CLASSES = ("LlamaForCausalLM", "Qwen2ForCausalLM")
_ATTENTION, _MLP = ("q_proj", "k_proj", "v_proj", "o_proj"), ("gate_proj", "up_proj", "down_proj")


def supports_fused(model) -> bool:
    """A Llama or Qwen2 decoder with plain RoPE, SiLU MLP and plain ``nn.Linear`` projections (an adapter-wrapped
    or quantised layer computes something else from its weight)."""
    config = getattr(model, "config", None)
    if type(model).__name__ not in _CLASSES or getattr(config, "hidden_act", None) != "silu":
        return False
    projections = [getattr(part, name) for layer in model.model.layers
                   for part, names in ((layer.self_attn, _ATTENTION), (layer.mlp, _MLP)) for name in names]
    if any(type(m) is not torch.nn.Linear for m in (*projections, model.lm_head)):
        return False
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default" or getattr(config, "mlp_bias", False):
        return False
    if getattr(config, "pretraining_tp", 1) != 1:
        return False
    return getattr(config, "_attn_implementation", "sdpa") == "sdpa"


class FusedForward:
    """``forward(ids, positions, mask, kv)`` -> the last position's logits.

    ``mask`` is an additive float mask ``(rows, 1, queries, keys)``; ``kv(layer, keys, values)`` stores a layer's
    new keys and values ``(rows, key/value heads, queries, head_dim)`` and returns the keys and values to attend
    over. ``segments`` (see :meth:`_attend`) skip the masked columns before each row range's first own one: the
    slot engine's rows end at one column but start at many, and attention reads every column it is given. The
    logits then agree with the full-width pass to float rounding, not bit for bit (the kernel sums in other
    blocks)."""

    def __init__(self, model):
        config, base = model.config, model.model
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = self.head_dim ** -0.5
        self.embed = base.embed_tokens.weight
        self.layers = []  # the model's own parameters, not copies: a fine-tune in place is seen at once
        for layer in base.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers.append((
                layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon,
                (attn.q_proj.weight, attn.q_proj.bias), (attn.k_proj.weight, attn.k_proj.bias),
                (attn.v_proj.weight, attn.v_proj.bias), (attn.o_proj.weight, attn.o_proj.bias),
                layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon,
                mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight))
        self.norm = (base.norm.weight, base.norm.variance_epsilon)
        self.head = model.lm_head.weight
        rotary = base.rotary_emb
        self.inv_freq, self.rope_scale = rotary.inv_freq.float(), rotary.attention_scaling
        self.cos = self.sin = torch.empty(0)

    def _rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos``/``sin`` at each position ``(rows, 1, queries, head_dim)``, from a table grown on demand (the
        library's arithmetic: ``position * inv_freq`` in float32, duplicated, cosine, scaled)."""
        need = int(positions.max()) + 1
        if need > self.cos.shape[0]:
            size = max(need, 2 * self.cos.shape[0], 256)
            freqs = torch.arange(size, dtype=torch.float, device=self.inv_freq.device)[:, None] * self.inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            self.cos = (emb.cos() * self.rope_scale).to(dtype)
            sin = (emb.sin() * self.rope_scale).to(dtype)
            half = sin.shape[-1] // 2  # the sign of rotate_half's negated half, folded in: (-a)*b == a*(-b) exactly
            self.sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)
        return self.cos[positions][:, None], self.sin[positions][:, None]

    # in-place steps where a fresh tensor is the target: the same products and sums, fewer large allocations
    @staticmethod
    def _norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return h.to(x.dtype).mul_(weight)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """``x * cos + rotate_half(x) * sin`` with ``sin``'s first half negated (:meth:`_rotary`)."""
        half = x.shape[-1] // 2
        return (x * cos).add_(torch.cat((x[..., half:], x[..., :half]), dim=-1).mul_(sin))

    def _attend(self, query, keys, values, mask, segments=None) -> torch.Tensor:
        """Attention over the key columns each row needs: ``segments``, ``(first row, end row, first column)``
        triples covering the rows in order, attend row ranges to the columns from theirs on (every earlier column
        is masked for those rows); ``None`` attends every row to every column."""
        if segments is None:
            return self._attend_all(query, keys, values, mask)
        parts = [self._attend_all(query[a:b], keys[a:b, :, m:], values[a:b, :, m:], mask[a:b, ..., m:])
                 for a, b, m in segments]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _attend_all(self, query, keys, values, mask) -> torch.Tensor:
        """Attention as the library's sdpa path runs it: with grouped key/value heads, one query token attends per
        key/value head (its query heads packed as rows), longer queries attend to repeated keys and values."""
        if self.kv_heads == self.heads:
            return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=self.scale)
        rows, heads, queries, dim = query.shape
        groups = heads // self.kv_heads
        if queries == 1:
            packed = query.reshape(rows, self.kv_heads, groups, dim)
            out = F.scaled_dot_product_attention(packed, keys, values, attn_mask=mask, scale=self.scale)
            return out.reshape(rows, heads, 1, dim)
        width = keys.shape[2]
        keys = keys[:, :, None].expand(rows, self.kv_heads, groups, width, dim).reshape(rows, heads, width, dim)
        values = values[:, :, None].expand(rows, self.kv_heads, groups, width, dim).reshape(rows, heads, width, dim)
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=self.scale)

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                 kv: Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                 segments: list[tuple[int, int, int]] | None = None) -> torch.Tensor:
        rows, queries = ids.shape
        x = F.embedding(ids, self.embed)
        cos, sin = self._rotary(positions, x.dtype)
        split, kv_split = (rows, queries, self.heads, self.head_dim), (rows, queries, self.kv_heads, self.head_dim)
        for index, (n1, e1, q, k, v, o, n2, e2, gate, up, down) in enumerate(self.layers):
            h = self._norm(x, n1, e1)
            query = self._rope(F.linear(h, *q).view(split).transpose(1, 2), cos, sin)
            key = self._rope(F.linear(h, *k).view(kv_split).transpose(1, 2), cos, sin)
            keys, values = kv(index, key, F.linear(h, *v).view(kv_split).transpose(1, 2))
            attended = self._attend(query, keys, values, mask, segments)
            x = x.add_(F.linear(attended.transpose(1, 2).reshape(rows, queries, -1), *o))
            h = self._norm(x, n2, e2)
            x = x.add_(F.linear(F.silu(F.linear(h, gate), inplace=True).mul_(F.linear(h, up)), down))
        # the head reads the last position as the library's does, a strided view of the normed sequence: a BLAS
        # may pick another kernel for that layout than for a compact copy (it does on AVX-512), and the logits'
        # last bits would differ
        return F.linear(self._norm(x, *self.norm)[:, -1:], self.head)[:, 0]
