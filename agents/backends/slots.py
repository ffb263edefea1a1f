"""Continuous batching at token granularity for a transformers causal LM, on its own forward pass.

``model.generate`` runs a batch until its longest row ends: on the rollout's mixed-length completions most
forward-pass rows are padding after EOS, and its growing KV cache is concatenated afresh at every token. The
:class:`SlotDecoder` keeps a fixed set of *slots* in a preallocated KV cache (:class:`SlotCache`, a transformers
``Cache``), all decoding one token per forward pass; a row that ends frees its slot and the next waiting prompt is
prefilled into it at once.

Layout: every slot writes its next token at the same cache column; a slot's own tokens are a contiguous span of
columns ending there, its positions are its own (``position_ids``), and a 4D mask hides every other column. A
prefilled prompt is placed so that it ends at the current column; once the oldest live span starts ``margin``
columns in (or the columns run out), the spans are shifted left past it. The model's code is untouched: it sees
an ordinary cache and a prepared mask. For Llama and Qwen2 models the passes run on a lean forward of the model's
own weights instead (agents/backends/fused.py: the same logits, a fraction of the operations per pass).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache

from agents.backends.fused import FusedForward, supports_fused
from core.sampling import SamplingParams

__all__ = ["SlotCache", "SlotDecoder", "left_pad", "length_groups", "supports_slots"]


def left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, position_ids)`` of token rows left-padded to one width; each row's positions
    count from its own first token."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
    return input_ids, attention, (attention.cumsum(-1) - 1).clamp(min=0)


def length_groups(lengths: Sequence[int], overhead: float = 80.0) -> list[list[int]]:
    """Indices of prompts in groups of similar length, each to be prefilled as one left-padded pass: the split
    that minimises the passes' cost, ``rows * width * (1 + width / 500) + overhead`` (in prompt tokens; the
    quadratic term is attention's). Measured on the tiny actor on 2 CPU cores: a pass costs about 18 us per
    padded token plus 1.5 ms, so ``overhead`` 80. Groups come shortest first; an exact split by dynamic
    programming over the sorted lengths."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best, cut = [0.0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        width = lengths[order[j - 1]]
        per_row = width * (1 + width / 500)
        for i in range(j):
            cost = best[i] + (j - i) * per_row + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def supports_slots(model) -> bool:
    """Every layer full attention (no sliding window, no recurrent state): what the slot layout can hold."""
    config = model.config
    types = getattr(config, "layer_types", None) or []
    if any(t != "full_attention" for t in types):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return not getattr(config, "is_encoder_decoder", False)


class _SlotLayer(CacheLayerMixin):
    """One layer's keys and values: ``(slots, heads, columns, head_dim)``, written at the decoder's column."""

    is_sliding = False

    def __init__(self, owner: SlotCache, index: int):
        super().__init__()
        self.owner, self.index = owner, index

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.keys, self.values = self.owner.buffers(self.index, key_states, value_states)
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        # decode: the first ``live`` slots write one token each at ``column`` and read every column up to it (views)
        live, col = key_states.shape[0], self.owner.column
        self.keys[:live, :, col:col + 1] = key_states
        self.values[:live, :, col:col + 1] = value_states
        return self.keys[:live, :, :col + 1], self.values[:live, :, :col + 1]

    def place(self, slots: torch.Tensor, start: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        if not self.is_initialized:
            self.lazy_initialization(keys, values)
        width = keys.shape[2]  # a copy along the slot axis of a column window (cheaper than mixed indexing)
        self.keys.narrow(2, start, width).index_copy_(0, slots, keys)
        self.values.narrow(2, start, width).index_copy_(0, slots, values)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.column + query_length, 0

    def get_seq_length(self) -> int:
        return self.owner.column

    def get_max_length(self) -> int:
        return self.owner.columns


class SlotCache(Cache):
    """A KV cache of ``slots`` rows by ``columns`` token columns, one :class:`_SlotLayer` per model layer.

    ``storage``: per layer, a ``(keys, values)`` pair of buffers at least this large (or ``None``) to take views of
    instead of allocating; a layer that has none, or too small a one, allocates and records its own there. Zeroing
    a fresh cache costs a run of the tiny actor about as much as 30 of its decode passes (new pages, first
    touched), and a reused one holds only finite keys and values of earlier rows, which every pass masks out as it
    does zeros."""

    def __init__(self, num_layers: int, slots: int, columns: int, storage: list | None = None):
        self.slots, self.columns, self.column = slots, columns, 0
        self.storage = storage if storage is not None else [None] * num_layers
        super().__init__(layers=[_SlotLayer(self, index) for index in range(num_layers)])

    def buffers(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``layer``'s keys and values ``(slots, heads, columns, head_dim)``, views of its stored buffers
        where they fit (same heads, head size, dtype and device; at least as many slots and columns)."""
        held = self.storage[layer]
        fits = held is not None and all(
            b.shape[0] >= self.slots and b.shape[1] == s.shape[1] and b.shape[2] >= self.columns
            and b.shape[3] == s.shape[3] and b.dtype == s.dtype and b.device == s.device
            for b, s in zip(held, (keys, values)))
        if not fits:
            slots, columns = self.slots, self.columns
            if held is not None:  # grow to cover both this run and the last one's shape
                slots, columns = max(slots, held[0].shape[0]), max(columns, held[0].shape[2])
            held = tuple(s.new_zeros(slots, s.shape[1], columns, s.shape[3]) for s in (keys, values))
            self.storage[layer] = held
        return tuple(b[:self.slots, :, :self.columns] for b in held)

    def place(self, slots: torch.Tensor, start: int, prefill: list[tuple[torch.Tensor, torch.Tensor]],
              rows: torch.Tensor | None = None) -> None:
        """Copy a prefill's keys and values per layer (rows left-padded to one width), its row ``rows[j]`` (or
        ``j``) into slot ``slots[j]``, from column ``start``."""
        for layer, (keys, values) in zip(self.layers, prefill):
            layer.place(slots, start, keys if rows is None else keys[rows], values if rows is None else values[rows])

    def shift(self, slots: int, begin: int, width: int, to: int, order: torch.Tensor | None = None) -> None:
        """The first ``slots`` slots' columns ``[begin, begin + width)`` go to ``[to, to + width)`` (the ranges may
        overlap: one copy out, one in); with ``order``, slot ``j``'s columns come from slot ``order[j]`` in the
        same two copies."""
        for layer in self.layers:
            if layer.is_initialized:
                for buffer in (layer.keys, layer.values):
                    moved = buffer[:slots, :, begin:begin + width].clone() if order is None \
                        else buffer[order, :, begin:begin + width]  # indexing copies
                    buffer[:slots, :, to:to + width] = moved

    def move(self, src: torch.Tensor, dst: torch.Tensor, width: int) -> None:
        """Slots ``src`` go to slots ``dst``, their first ``width`` columns (indexing copies them out first)."""
        for layer in self.layers:
            if layer.is_initialized:
                for buffer in (layer.keys, layer.values):
                    buffer[dst, :, :width] = buffer[src, :, :width]


class SlotDecoder:
    """Generates a completion for every prompt row with at most ``slots`` rows decoding at once.

    ``finished(ids)`` says whether a row's completion so far is done (EOS, a stop string, the length limit).
    Rows are admitted in the order given; tokens of a greedy row equal ``generate``'s up to floating-point ties.
    ``fused``: run the passes on :class:`~agents.backends.fused.FusedForward` where the model supports it (same
    logits, far fewer operations per pass), else on the model's own forward. ``admit``: how many slots must be
    free before waiting prompts are prefilled together (default an eighth of the slots). ``storage``: the KV
    buffers of an earlier decoder of the same model, to reuse (see :class:`SlotCache`). ``ragged``: on the lean
    forward, each decode pass attends runs of ``segment_rows`` slots to the columns from their oldest row's first
    on (:meth:`_segments`) instead of every slot to every column; compactions and repacks order the slots by
    where their spans start, so neighbours need similar columns. Tokens then equal ``generate``'s as the
    full-width pass's do (up to floating-point ties), but log-probabilities only to float rounding.
    """

    def __init__(self, model, pad_token_id: int, slots: int = 64, margin: int = 16, fused: bool = True,
                 admit: int | None = None, prefill_overhead: float = 80.0, storage: list | None = None,
                 ragged: bool = True, segment_rows: int = 8, segment_overhead: float = 300.0):
        # ``margin``: cache columns beyond the longest row, and how many columns no live row uses any more are
        # let pile up on the left before the spans shift back. A full-width pass (``ragged`` off) reads all
        # columns up to the current one, so a small margin keeps that near the longest live span; a shift costs
        # about 1/``margin`` of what the passes since the last one read
        self.model, self.pad, self.slots, self.margin = model, pad_token_id, slots, max(1, margin)
        self.admit = max(1, admit if admit is not None else slots // 8)
        self.prefill_overhead = prefill_overhead  # a prefill pass's fixed cost in prompt tokens (length_groups)
        self.device = next(model.parameters()).device
        self.num_layers = model.config.get_text_config().num_hidden_layers
        # transformers 5 renamed ``past_key_values`` to ``cache``; a model's own code may still take the old name
        self.cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.fused = FusedForward(model) if fused and supports_fused(model) else None
        # a segment's attention call costs about as much as ``segment_overhead`` (row, column) pairs of attention:
        # on the tiny actor on 2 CPU cores a layer's call costs about 8 us and a pair about 57 ns when the four
        # layers run in turn (benchmarks/results/decode_pass_fourth_cpu.json), and each segment's slices and the
        # concatenation of their outputs about as much again as the call
        self.ragged = ragged and self.fused is not None
        self.segment_rows, self.segment_overhead = max(1, segment_rows), segment_overhead
        # the cache's buffers (:class:`SlotCache`'s ``storage``): a caller that keeps this list and passes it to its
        # next decoder saves that run the allocation
        self.storage = storage if storage is not None else [None] * self.num_layers

    @torch.inference_mode()
    def run(self, rows: list[list[int]], order: list[int], sampling: SamplingParams,
            finished: Callable[[list[int]], bool]) -> list[tuple[list[int], list[float] | None]]:
        out: list[tuple[list[int], list[float] | None]] = [([], [] if sampling.logprobs else None) for _ in rows]
        if not rows:
            return out
        slots = min(self.slots, len(rows))
        longest = max(len(r) for r in rows) + sampling.max_new_tokens
        cache = SlotCache(self.num_layers, slots, columns=longest + self.margin, storage=self.storage)
        valid = torch.zeros(slots, cache.columns, dtype=torch.bool, device=self.device)
        start = [0] * slots  # first column of each slot's span
        position = torch.zeros(slots, dtype=torch.long, device=self.device)
        token = torch.full((slots,), self.pad, dtype=torch.long, device=self.device)
        row_of: list[int | None] = [None] * slots
        waiting = list(reversed(order))
        live = slots  # slots [0, live) take part in forward passes
        generator = None
        if not sampling.greedy and sampling.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(sampling.seed)

        def emit(slots_: list[int], logits: torch.Tensor) -> None:
            """Choose each slot's next token; a row that is done frees its slot."""
            chosen, logprobs = self._choose(logits, sampling, generator)
            chosen_list = chosen.tolist()
            lp_list = logprobs.tolist() if logprobs is not None else None
            keep, keep_tokens = [], []
            for j, s in enumerate(slots_):
                ids, lps = out[row_of[s]]
                ids.append(chosen_list[j])
                if lps is not None:
                    lps.append(lp_list[j])
                if finished(ids):
                    row_of[s] = None
                    valid[s] = False
                else:
                    keep.append(s)
                    keep_tokens.append(chosen_list[j])
            if keep:
                token[torch.tensor(keep, device=self.device)] = torch.tensor(keep_tokens, device=self.device)

        while True:
            free = [s for s in range(live) if row_of[s] is None]
            # prompts are prefilled a few at a time (``admit`` free slots, or every waiting one, or when nothing
            # decodes): one pass over several prompts costs far less than one pass each
            if waiting and free and (len(free) >= min(self.admit, len(waiting)) or len(free) == live):
                new = [waiting.pop() for _ in range(min(len(free), len(waiting)))]
                width = max(len(rows[r]) for r in new)
                if cache.columns - max(cache.column, width) < 1:
                    self._compact(cache, valid, start, position, token, row_of, live)
                if cache.column < width:  # the prompts must end at the current column: the live spans move right
                    self._shift(cache, valid, start, row_of, live, width - cache.column)
                # the newest spans start last: the highest free slots keep the slots ordered by start (ragged)
                free = [s for s in range(live) if row_of[s] is None][-len(new):]
                emit(free, self._prefill(cache, valid, start, position, row_of, free, new, rows))
            busy = [s for s in range(live) if row_of[s] is not None]
            if not busy:
                if waiting:
                    continue
                return out
            if not waiting and len(busy) <= live // 2:
                live = self._repack(cache, valid, start, position, token, row_of, sorted(busy, key=start.__getitem__))
                busy = list(range(live))
            if cache.column >= cache.columns or min(start[s] for s in busy) >= self.margin:
                self._compact(cache, valid, start, position, token, row_of, live)
                busy = [s for s in range(live) if row_of[s] is not None]
            col = cache.column
            valid[:live, col] = True  # idle slots see their own column only: no row is all masked
            mask = self._additive(valid[:live, None, None, :col + 1])
            segments = self._segments(start, row_of, live, col) if self.ragged else None
            logits = self._decode_pass(cache, token[:live, None], position[:live, None], mask, segments)
            cache.column += 1
            if len(busy) == live:  # every slot decoding (most passes): no indexing
                position[:live] += 1
            else:
                valid[torch.tensor([s for s in range(live) if row_of[s] is None], device=self.device), col] = False
                rows_busy = torch.tensor(busy, device=self.device)
                position[rows_busy] += 1
                logits = logits[rows_busy]
            emit(busy, logits)

    def _prefill(self, cache: SlotCache, valid, start, position, row_of, free, new, rows) -> torch.Tensor:
        """Run the new prompts and place them so each ends just before the current column; returns each new row's
        last logits.

        Equal prompts (a prompt's ``n`` samples, admitted together) run once and are copied into each slot.
        Prompts of unequal length run in groups of similar length (:func:`length_groups`), each left-padded to
        its own longest: a whole batch of mixed refinement prompts padded to one width is a quarter padding."""
        unique: dict[tuple[int, ...], int] = {}
        source = [unique.setdefault(tuple(rows[r]), len(unique)) for r in new]
        prompts, col = list(unique), cache.column
        logits: list[torch.Tensor | None] = [None] * len(prompts)
        for group in length_groups([len(p) for p in prompts], self.prefill_overhead):
            local = {u: i for i, u in enumerate(group)}
            ids, attention, positions = left_pad([prompts[u] for u in group], self.pad)
            out, prefill = self._prefill_pass(ids.to(self.device), attention.to(self.device), positions.to(self.device))
            placed = [j for j, u in enumerate(source) if u in local]
            if len(placed) == len(group):  # one slot per prompt: the pass's rows go to their slots as they are
                slot_of = {source[j]: free[j] for j in placed}
                cache.place(torch.tensor([slot_of[u] for u in group], device=self.device), col - ids.shape[1], prefill)
            else:
                cache.place(torch.tensor([free[j] for j in placed], device=self.device), col - ids.shape[1], prefill,
                            torch.tensor([local[source[j]] for j in placed], device=self.device))
            for u, i in local.items():
                logits[u] = out[i]
        for s, r in zip(free, new):
            row_of[s] = r
            start[s] = col - len(rows[r])
            valid[s] = False
            valid[s, start[s]:col] = True
            position[s] = len(rows[r])
        return torch.stack([logits[u] for u in source])

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        """The float mask attention adds: 0 where ``allowed``, the dtype's minimum elsewhere."""
        mask = torch.zeros(allowed.shape, dtype=self.model.dtype, device=self.device)
        return mask.masked_fill_(~allowed, torch.finfo(mask.dtype).min)

    def _segments(self, start, row_of, live: int, col: int) -> list[tuple[int, int, int]]:
        """The decode pass's row ranges and the first column each reads, ``(first slot, end slot, first column)``:
        runs of ``segment_rows`` slots joined where one attention call over the union's columns costs less than
        two (cost: rows x columns + ``segment_overhead`` per call; an exact split by dynamic programming over the
        runs). An idle slot reads only the current column."""
        step = self.segment_rows
        firsts = [min(start[s] if row_of[s] is not None else col for s in range(a, min(a + step, live)))
                  for a in range(0, live, step)]
        n, width = len(firsts), col + 1
        best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
        for j in range(1, n + 1):
            first, end = width, min(j * step, live)
            for i in range(j - 1, -1, -1):
                first = min(first, firsts[i])
                cost = best[i] + (end - i * step) * (width - first) + self.segment_overhead
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        segments, j = [], n
        while j:
            i = cut[j]
            segments.append((i * step, min(j * step, live), min(firsts[i:j])))
            j = i
        return segments[::-1]

    def _decode_pass(self, cache: SlotCache, ids, positions, mask, segments=None) -> torch.Tensor:
        """One token per live slot: the last logits, the new keys and values written at the cache's column."""
        if self.fused is not None:
            return self.fused(ids, positions, mask, lambda layer, k, v: cache.layers[layer].update(k, v), segments)
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                          **{self.cache_kw: cache}).logits[:, -1]

    def _prefill_pass(self, ids, attention, positions) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Left-padded prompts: each row's last logits, and every layer's keys and values."""
        if self.fused is not None:
            width = ids.shape[1]
            causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
            mask = self._additive((causal[None] & attention.bool()[:, None, :])[:, None])
            kept: list[tuple[torch.Tensor, torch.Tensor]] = []

            def keep(layer: int, keys: torch.Tensor, values: torch.Tensor):
                kept.append((keys, values))
                return keys, values  # a prompt attends to its own tokens only

            return self.fused(ids, positions, mask, keep), kept
        prefill = DynamicCache()
        logits = self.model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True,
                            logits_to_keep=1, **{self.cache_kw: prefill}).logits[:, -1]
        return logits, [(layer.keys, layer.values) for layer in prefill.layers]

    def _compact(self, cache: SlotCache, valid, start, position, token, row_of, live: int) -> None:
        """Shift every span left past the columns no live row uses any more (spans are contiguous and no longer
        than the longest row, so this always frees at least the cache's margin). With ``ragged`` the same copy
        also orders the busy slots by where their spans start, idle slots last (:meth:`_segments`)."""
        busy = [s for s in range(live) if row_of[s] is not None]
        by = -min((start[s] for s in busy), default=cache.column)
        order = None
        if self.ragged:
            order = sorted(busy, key=start.__getitem__) + [s for s in range(live) if row_of[s] is None]
            if order == list(range(live)):
                order = None
        index = None
        if order is not None:
            index = torch.tensor(order, device=self.device)
            for buffer in (valid, position, token):
                buffer[:live] = buffer[index]  # indexing copies
            start[:live], row_of[:live] = [start[s] for s in order], [row_of[s] for s in order]
        self._shift(cache, valid, start, row_of, live, by, index)

    def _shift(self, cache: SlotCache, valid, start, row_of, live: int, by: int,
               order: torch.Tensor | None = None) -> None:
        """Move every live slot's columns by ``by`` (left when negative); the current column moves with them.
        ``order``: the slots' bookkeeping was already permuted so; the cache's rows move with the same copy."""
        begin = max(0, -by)
        width = cache.column - begin
        cache.shift(live, begin, width, to=begin + by, order=order)
        moved = valid[:live, begin:begin + width].clone()
        valid[:live] = False
        valid[:live, begin + by:begin + by + width] = moved
        for s in range(live):
            if row_of[s] is not None:
                start[s] += by
        cache.column += by

    def _repack(self, cache: SlotCache, valid, start, position, token, row_of, busy: list[int]) -> int:
        """Move the busy slots to the front so forward passes stop computing idle ones."""
        src = torch.tensor(busy, device=self.device)
        dst = torch.arange(len(busy), device=self.device)
        cache.move(src, dst, cache.column)
        valid[:len(busy)] = valid[src].clone()
        position[:len(busy)] = position[src].clone()
        token[:len(busy)] = token[src].clone()
        moved_start, moved_rows = [start[s] for s in busy], [row_of[s] for s in busy]
        for j in range(len(row_of)):
            start[j] = moved_start[j] if j < len(busy) else 0
            row_of[j] = moved_rows[j] if j < len(busy) else None
        return len(busy)

    @staticmethod
    def _choose(logits: torch.Tensor, sampling: SamplingParams,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Greedy argmax, or a draw at ``temperature`` from the top-``top_p`` nucleus; log-probabilities are of the
        distribution drawn from (as ``generate``'s processed scores are)."""
        scores = logits.float()
        if sampling.greedy:
            chosen = scores.argmax(-1)
        else:
            scores = scores / sampling.temperature
            if sampling.top_p < 1:
                ordered, index = scores.sort(-1, descending=True)
                probs = ordered.softmax(-1)
                drop = probs.cumsum(-1) - probs > sampling.top_p  # the top token is always kept
                scores = scores.scatter(-1, index, ordered.masked_fill(drop, float("-inf")))
            chosen = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]
        logprobs = None
        if sampling.logprobs:
            logprobs = scores.log_softmax(-1).gather(-1, chosen[:, None])[:, 0]
        return chosen, logprobs
