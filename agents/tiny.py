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

__all__ = ["TinyModelConfig", "build_tokenizer", "build_tiny_model", "SPECIAL_TOKENS"]

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
