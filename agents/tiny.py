"""The embedded default model: a tokenizer built with ``tokenizers`` and a small Llama trained from scratch.

The tokenizer is a BPE over the synthetic world's text whose pre-tokenizer isolates every digit (so numbers are
digit sequences the model can do arithmetic on) and attaches a space to the word after it (so decoding is exact:
``decode(encode(text)) == text`` for any printable-ASCII text). All printable ASCII characters are in its alphabet,
so text outside the synthetic world still encodes, one character at a time.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

__all__ = ["TinyModelConfig", "build_tokenizer", "build_tiny_model", "expand_depth", "SPECIAL_TOKENS"]

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
# a newline alone; a digit (with its space); a word (with its space); a run of other symbols; other whitespace
_PRE_TOKEN = Regex(r"\n| ?\d| ?[A-Za-z]+| ?[^\sA-Za-z\d]+|[^\S\n]+")


@dataclass
class TinyModelConfig:
    """Shape of the tiny Llama; the defaults are the shipped actor's (≈0.9 M parameters)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True
    vocab_size: int = 384  # BPE target size; the real size is whatever the tokenizer ends up with


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 384) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Split(_PRE_TOKEN, behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=list(string.printable),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS)
    fast.padding_side = "left"  # generation pads on the left so every prompt ends where its completion starts
    return fast


def build_tiny_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    import torch

    torch.manual_seed(seed)
    fields = asdict(config)
    fields.pop("vocab_size")
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_key_value_heads=config.num_attention_heads,
        **fields,
    )
    return LlamaForCausalLM(llama)


def expand_depth(model, extra: int):
    """Make a trained decoder deeper without changing what it computes (block expansion, as in LLaMA Pro, Wu et al.
    2024): the layers fall into ``extra`` equal groups and a copy of each group's last layer follows it, with its
    attention output and MLP down projections zeroed, so the copy adds nothing to the residual stream until
    training moves those two projections. A larger critic can then start from a trained one instead of from
    scratch. Works on any model whose blocks are ``model.model.layers`` with ``self_attn.o_proj`` and
    ``mlp.down_proj`` (Llama, Qwen2); changes ``model`` in place and returns it."""
    import copy

    import torch

    layers = model.model.layers
    count = len(layers)
    if extra < 0 or (extra and count % extra):
        raise ValueError(f"expand_layers must divide the model's {count} layers into equal groups, got {extra}")
    if not extra:
        return model
    group, grown = count // extra, []
    for index, layer in enumerate(layers):
        grown.append(layer)
        if (index + 1) % group == 0:
            twin = copy.deepcopy(layer)
            for projection in (twin.self_attn.o_proj, twin.mlp.down_proj):
                with torch.no_grad():
                    projection.weight.zero_()
                    if projection.bias is not None:
                        projection.bias.zero_()
            grown.append(twin)
    for index, layer in enumerate(grown):
        layer.self_attn.layer_idx = index  # the KV cache is indexed by it
    model.model.layers = torch.nn.ModuleList(grown)
    config = model.config
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[0]] * len(grown)
    config.num_hidden_layers = len(grown)
    return model
