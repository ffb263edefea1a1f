"""The slot engine (continuous batching over a slot KV cache) against ``model.generate``, the library's path."""

import functools

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from agents.backends import SamplingParams
from agents.backends.fused import supports_fused
from agents.backends.hf import HFBackend
from agents.backends.slots import SlotDecoder, length_groups
from agents.prompts import PromptTemplate
from envs import SyntheticArithmetic
from pipeline.checkpoints import SHIPPED_ACTOR

TEMPLATE = PromptTemplate(number_format="reversed")
# every length of problem, so prompts and completions differ in length and rows end at different tokens
PROMPTS = [TEMPLATE.prompt(p.question) for p in SyntheticArithmetic(size=40, min_steps=1, max_steps=8, split="test", seed=5)]


@pytest.fixture(scope="module")
def engines():
    reference = HFBackend(SHIPPED_ACTOR, threads=2, batch_size=16, engine="generate")
    slots = HFBackend(reference.model, reference.tokenizer, batch_size=6, engine="slots")
    return reference, slots


def _ids(out):
    return [[c.token_ids for c in row] for row in out]


def test_auto_engine_is_slots_for_full_attention(engines):
    assert HFBackend(engines[0].model, engines[0].tokenizer).engine == "slots"


@pytest.mark.parametrize("sampling", [SamplingParams(max_new_tokens=120),
                                      SamplingParams(max_new_tokens=40, stop=("\n",), n=2, logprobs=True)])
def test_greedy_tokens_equal_generate(engines, sampling):
    reference, slots = engines
    expected, got = reference.generate(PROMPTS, sampling), slots.generate(PROMPTS, sampling)
    assert _ids(got) == _ids(expected)
    assert [[c.text for c in row] for row in got] == [[c.text for c in row] for row in expected]
    assert [[c.finish_reason for c in row] for row in got] == [[c.finish_reason for c in row] for row in expected]
    if sampling.logprobs:
        for row_got, row_expected in zip(got, expected):
            assert row_got[0].logprobs == pytest.approx(row_expected[0].logprobs, abs=1e-4)
    if sampling.stop:
        assert all(c.text.count("\n") <= 1 for row in got for c in row)


def test_compaction_and_right_shifts_keep_the_tokens(engines):
    """A cache two columns wider than the longest row compacts every other token; prompts taken shortest first
    make every admission shift the live rows right."""
    reference, slots = engines
    sampling = SamplingParams(max_new_tokens=100)
    expected = _ids(reference.generate(PROMPTS, sampling))
    rows = [slots.encode(p) for p in PROMPTS]
    decoder = SlotDecoder(slots.model, slots.tokenizer.pad_token_id, slots=5, margin=2)
    order = sorted(range(len(rows)), key=lambda r: len(rows[r]))
    generated = decoder.run(rows, order, sampling, lambda ids: slots._finished(ids, sampling))
    got = [[slots._completion(rows[r], ids, lps, sampling).token_ids] for r, (ids, lps) in enumerate(generated)]
    assert got == expected


def test_reused_cache_buffers_keep_the_tokens_and_grow_when_needed(engines):
    """Buffers kept from earlier runs hold other rows' keys and values: filled with large finite values they give
    the same tokens and log-probabilities, bit for bit, as fresh zeros; a run needing more slots or columns grows
    them, a smaller one takes views."""
    _, slots = engines
    sampling = SamplingParams(max_new_tokens=60, logprobs=True)
    rows = [slots.encode(p) for p in PROMPTS]

    def run(storage, slot_count, subset=rows):
        decoder = SlotDecoder(slots.model, slots.tokenizer.pad_token_id, slots=slot_count, storage=storage)
        return decoder.run(subset, list(range(len(subset))), sampling, lambda ids: slots._finished(ids, sampling)), \
            decoder.storage

    fresh, storage = run(None, 6)
    keys = storage[0][0]
    with torch.inference_mode():  # the buffers are inference tensors, as the decoder made them
        for buffer in (b for layer in storage for b in layer):
            buffer.copy_(torch.randn(buffer.shape, generator=torch.Generator().manual_seed(0)) * 100)
    again, same = run(storage, 6)
    assert again == fresh and same[0][0].data_ptr() == keys.data_ptr()
    assert run(storage, 3, rows[:5])[0] == run(None, 3, rows[:5])[0] and storage[0][0] is keys  # smaller: views
    wider, grown = run(storage, 9, [r + r for r in rows[:12]])  # more slots, more columns: new buffers
    assert grown[0][0].shape[0] == 9 and grown[0][0].shape[2] > keys.shape[2]
    assert wider == run(None, 9, [r + r for r in rows[:12]])[0]
    # the backend keeps its buffers between calls and gives them up on request
    slots.generate(PROMPTS[:4], SamplingParams(max_new_tokens=10))
    kept = slots._kv_storage
    slots.generate(PROMPTS[:4], SamplingParams(max_new_tokens=10))
    assert slots._kv_storage is kept and kept[0] is not None
    slots.release_cache()
    assert slots._kv_storage is None


def test_sampling_is_seeded_and_its_logprobs_are_the_models(engines):
    _, slots = engines
    sampling = SamplingParams(max_new_tokens=30, temperature=1.0, n=3, seed=7, logprobs=True)
    first, again = slots.generate(PROMPTS[:8], sampling), slots.generate(PROMPTS[:8], sampling)
    assert _ids(first) == _ids(again)
    assert any(len({tuple(c.token_ids) for c in row}) > 1 for row in first)  # a prompt's samples differ
    other = slots.generate(PROMPTS[:8], SamplingParams(max_new_tokens=30, temperature=1.0, n=3, seed=8))
    assert _ids(other) != _ids(first)
    # at temperature 1 with no nucleus cut, a sample's log-probability is the model's score of its text
    flat = [c for row in first for c in row]
    scores = slots.score([p for p in PROMPTS[:8] for _ in range(3)], [c.text for c in flat])
    assert scores == pytest.approx([sum(c.logprobs) for c in flat], abs=1e-3)


def _count_prefills(monkeypatch) -> tuple[list[int], list[list[tuple[int, ...]]]]:
    """Rows admitted at each admission, and the prompts (unpadded) of every prefill pass, whichever forward the
    passes run on."""
    admit, prefill, admitted, passes = SlotDecoder._prefill, SlotDecoder._prefill_pass, [], []

    @functools.wraps(admit)
    def admitting(self, cache, valid, start, position, row_of, free, new, rows):
        admitted.append(len(new))
        return admit(self, cache, valid, start, position, row_of, free, new, rows)

    @functools.wraps(prefill)
    def counting(self, ids, attention, *args):
        passes.append([tuple(row[mask.bool()].tolist()) for row, mask in zip(ids, attention)])
        return prefill(self, ids, attention, *args)

    monkeypatch.setattr(SlotDecoder, "_prefill", admitting)
    monkeypatch.setattr(SlotDecoder, "_prefill_pass", counting)
    return admitted, passes


def test_a_prompts_samples_admitted_together_share_one_prefill(engines, monkeypatch):
    """``n`` samples of a prompt that enter slots together are prefilled once: the model sees each prompt once."""
    reference, _ = engines
    wide = HFBackend(reference.model, reference.tokenizer, batch_size=24, engine="slots")
    admitted, passes = _count_prefills(monkeypatch)
    out = wide.generate(PROMPTS[:8], SamplingParams(max_new_tokens=30, temperature=1.0, n=3, seed=7))
    assert admitted == [24] and [len(row) for row in out] == [3] * 8
    prefilled = [prompt for rows in passes for prompt in rows]
    assert sorted(prefilled) == sorted(tuple(wide.encode(p)) for p in PROMPTS[:8])
    assert any(len({tuple(c.token_ids) for c in row}) > 1 for row in out)  # one prefill, still distinct samples


def test_an_admission_of_mixed_lengths_is_prefilled_in_groups_of_similar_length(engines, monkeypatch):
    """Short prompts are not padded to the longest one's width: the admission splits into passes of similar
    lengths (``length_groups``), and the tokens do not change."""
    reference, slots = engines
    sampling = SamplingParams(max_new_tokens=60)
    mixed = [PROMPTS[0], PROMPTS[7], PROMPTS[8], PROMPTS[15]] * 3  # levels 1 and 8: short and long prompts
    expected = _ids(reference.generate(mixed, sampling))
    wide = HFBackend(reference.model, reference.tokenizer, batch_size=12, engine="slots")
    admitted, passes = _count_prefills(monkeypatch)
    assert _ids(wide.generate(mixed, sampling)) == expected
    assert admitted == [12] and len(passes) == 2
    short, long = (max(len(p) for p in rows) for rows in passes)
    assert short < long and all(len(p) <= short for p in passes[0])


def test_length_groups_split_where_padding_costs_more_than_a_pass():
    assert length_groups([50, 48, 52], overhead=80) == [[1, 0, 2]]       # a little padding: one pass
    assert length_groups([20, 180, 22, 175], overhead=80) == [[0, 2], [3, 1]]
    assert length_groups([20, 180, 22, 175], overhead=10_000) == [[0, 2, 3, 1]]  # passes dear: one
    assert sorted(i for g in length_groups(list(range(1, 65)), overhead=5) for i in g) == list(range(64))
    assert length_groups([]) == []


def test_waiting_prompts_are_prefilled_several_at_a_time(engines, monkeypatch):
    """With ``admit=3`` a freed slot waits until three are free (or the rest of the queue fits); the tokens do
    not change."""
    reference, slots = engines
    sampling = SamplingParams(max_new_tokens=100)
    expected = _ids(reference.generate(PROMPTS, sampling))
    rows = [slots.encode(p) for p in PROMPTS]
    admitted, _ = _count_prefills(monkeypatch)
    decoder = SlotDecoder(slots.model, slots.tokenizer.pad_token_id, slots=6, admit=3)
    generated = decoder.run(rows, list(range(len(rows))), sampling, lambda ids: slots._finished(ids, sampling))
    waiting = len(rows)
    for n in admitted:
        assert n >= min(3, waiting)
        waiting -= n
    assert waiting == 0 and len(admitted) < len(rows) - 6
    assert [[slots._completion(rows[r], ids, lps, sampling).token_ids] for r, (ids, lps) in enumerate(generated)] \
        == expected


def _tiny(cls_config, **overrides):
    torch.manual_seed(0)
    config = cls_config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=overrides.pop("num_key_value_heads", 4), max_position_embeddings=256,
                        **overrides)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):  # initialised to zero: make them count
                parameter.normal_(std=0.5)
    return model


@pytest.mark.parametrize("which", ["tiny actor", "qwen2 with q/k/v biases", "llama with grouped heads"])
def test_the_lean_forward_gives_the_models_logits_bit_for_bit(engines, which):
    """The slot engine's own pass (agents/backends/fused.py) against the model's forward: the same tokens and
    log-probabilities to the last bit, over prefills of several padded prompts, compactions and refills."""
    model = {"tiny actor": lambda: engines[1].model, "qwen2 with q/k/v biases": lambda: _tiny(Qwen2Config),
             "llama with grouped heads": lambda: _tiny(LlamaConfig, num_key_value_heads=2)}[which]()
    rows = [row[:30] for row in (engines[1].encode(p) for p in PROMPTS[:24])]
    rows = rows if which == "tiny actor" else [[3 + t % 60 for t in row] for row in rows]
    sampling = SamplingParams(max_new_tokens=25, logprobs=True)
    out = {}
    for fused in (True, False):
        decoder = SlotDecoder(model, 0, slots=5, margin=3, fused=fused, ragged=False)
        assert (decoder.fused is not None) == fused
        out[fused] = decoder.run(rows, list(range(len(rows))), sampling, lambda ids: len(ids) >= 25)
    assert out[True] == out[False]
    # ragged attention (one call per slot here) skips masked columns: the same tokens, log-probabilities to rounding
    ragged = SlotDecoder(model, 0, slots=5, margin=3, segment_rows=1, segment_overhead=0)
    calls = []
    segments = ragged._segments
    ragged._segments = lambda *args: calls.append(segments(*args)) or calls[-1]
    got = ragged.run(rows, list(range(len(rows))), sampling, lambda ids: len(ids) >= 25)
    assert any(len(c) > 1 and any(m > 0 for _, _, m in c) for c in calls)
    assert [ids for ids, _ in got] == [ids for ids, _ in out[False]]
    for (_, lps), (_, expected) in zip(got, out[False]):
        assert lps == pytest.approx(expected, abs=1e-5)


def test_ragged_segments_cover_the_rows_and_skip_only_masked_columns(engines):
    """Runs of slots are joined where one call over their columns costs less than two; every busy row's span
    lies inside its segment's columns, and an idle slot needs only the current column."""
    decoder = SlotDecoder(engines[1].model, 0, slots=8, segment_rows=2, segment_overhead=10)
    col = 100
    start = [90, 92, 10, 12, 95, 0, 97, 99]
    row_of = [0, 1, 2, 3, 4, None, 6, 7]
    segments = decoder._segments(start, row_of, 8, col)
    assert [(a, b) for a, b, _ in segments] == [(0, 2), (2, 4), (4, 8)]
    assert [m for _, _, m in segments] == [90, 10, 95]
    assert decoder._segments(start, row_of, 8, col) == segments  # a pure function of the layout
    one = SlotDecoder(engines[1].model, 0, slots=8, segment_rows=2, segment_overhead=10_000)._segments(start, row_of, 8, col)
    assert one == [(0, 8, 10)]  # a call costing more than the columns it saves: one segment


def test_adapters_keep_the_models_forward(engines):
    """A LoRA-wrapped layer computes something the lean pass does not: it is not used."""
    assert supports_fused(engines[0].model)
    adapted = get_peft_model(_tiny(LlamaConfig), LoraConfig(r=2, target_modules=["q_proj"]))
    assert not supports_fused(adapted) and not supports_fused(adapted.base_model.model)


def test_models_with_sliding_windows_use_generate(engines):
    reference, _ = engines
    model = reference.model
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    try:
        assert HFBackend(model, reference.tokenizer).engine == "generate"
        with pytest.raises(ValueError, match="engine='slots' needs full attention"):
            HFBackend(model, reference.tokenizer, engine="slots")
    finally:
        model.config.layer_types = None
    with pytest.raises(ValueError, match="engine must be one of"):
        HFBackend(model, reference.tokenizer, engine="fast")
