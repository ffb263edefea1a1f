"""Supervised training of a critique model on an AutoMathCritique dataset, with the actor's SFT machinery.

``init="actor"`` starts from the actor checkpoint (same tokenizer, and the actor already knows how to derive a
step from the story, which is most of checking one); ``init="scratch"`` builds a new tokenizer and model of the
tiny shape. The critic learns to write the critique in the one format after ``Critique:``.

Training has three phases, one after the other (``CriticSFTConfig``):

1. **Whole critiques**: the critic's own computation of each step, then (read in) the solution's and the two
   results side by side, then its verdict and explanation. Here the verdict is one token in about a hundred and
   six lines in seven are "correct": a critic fits it by always saying "correct", computing well but never
   comparing (the earlier shipped critic did exactly that).
2. **Verdict drill on lines alone**: single judged lines (``Step 2: 51*3=153 | says 51*3=160 | =153 =160 |``),
   half of them wrong, without the problem, the loss on the verdict and the rest of the line. Without the
   problem around them, a tiny model learns the comparison within a few hundred steps; inside whole
   critiques it learns it far more slowly.
3. **Verdict drill in context**: the same lines inside their critiques, the loss on the critic's own
   computation, the verdict and the rest of the line, so the comparison carries over to whole critiques.

The drills sample at random and never see an end-of-text after a verdict. Half of each drill's examples are
whole critiques (``drill_critique_share``): drilled on verdicts alone, the critic lost much of its arithmetic
(its computations, compared in code, fell from 0.87 to 0.76 balanced accuracy on natural errors); with the
mix it keeps improving (checkpoints/tiny-critic/README.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.backends import resolve_model
from agents.prompts import ChatTemplate, PromptTemplate
from agents.tiny import TinyModelConfig, build_tiny_model, build_tokenizer, expand_depth
from core.config import config_from_dict
from core.critique import Critique, to_paper_text
from critics.model_critic import model_lines, model_text
from critics.paper_format import RowFormatError, from_refinement_row, from_row, read_rows
from envs.datasets import data_path
from trainers.sft import SFTPhase, sft_train, with_lora

__all__ = ["CriticSFTConfig", "HFCriticSFTConfig", "chat_examples", "paper_examples", "parse_rows", "rows_to_examples",
           "train_hf_critic", "train_tiny_critic", "verdict_examples", "drill_tokens", "mixed_critiques"]


@dataclass
class CriticSFTConfig:
    """Everything that decides a trained critic besides its data: start point, optimisation, seed."""

    seed: int = 0
    init: str = "actor"  # actor | scratch | checkpoint (continue training ``checkpoint``, e.g. a critic)
    checkpoint: str | None = None
    verdict_examples: int = 20_000  # drill examples: lines cut before their verdict, half "correct", half "wrong"
    verdict_line_steps: int = 800  # drill 1: the judged line alone (no problem, no solution): fast, learns to compare
    verdict_line_learning_rate: float = 1e-3
    verdict_steps: int = 1500  # drill 2: the judged line in its whole critique: own computation, verdict, explanation
    verdict_learning_rate: float = 5e-4
    drill_critique_share: float = 0.5  # share of each drill's examples that are whole critiques (keeps the arithmetic)
    number_format: str = "reversed"
    model: TinyModelConfig = field(default_factory=TinyModelConfig)  # shape for init=scratch
    # a larger critic than its start: this many more layers, each starting as a pass-through copy (expand_depth)
    expand_layers: int = 0
    train_steps: int = 4500  # whole critiques (0: skip, e.g. to drill a trained critic with init=checkpoint)
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    max_length: int = 448
    sampling_strategy: str = "group_by_length"  # critiques vary a lot in length: batch similar ones together
    threads: int = 2

    def __post_init__(self) -> None:
        if self.init not in ("actor", "scratch", "checkpoint"):
            raise ValueError(f"critic init must be 'actor', 'scratch' or 'checkpoint', got {self.init!r}")
        if self.init == "checkpoint" and not self.checkpoint:
            raise ValueError("critic init=checkpoint needs recipe.checkpoint (the model to continue from)")
        if self.expand_layers < 0:
            raise ValueError(f"critic expand_layers must be >= 0, got {self.expand_layers}")
        if not 0.0 <= self.drill_critique_share < 1.0:
            raise ValueError(f"drill_critique_share must be in [0, 1), got {self.drill_critique_share}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CriticSFTConfig:
        return config_from_dict(cls, d, "CriticSFTConfig", model=TinyModelConfig)


def train_tiny_critic(config: CriticSFTConfig, rows: list[dict[str, Any]], out_dir: str | Path,
                      actor_checkpoint: str | Path | None = None, log_every: int = 100,
                      render: Any = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a critique model on critique rows; ``render`` picks the text format (default: the stepwise one),
    ``data`` (the dataset's stats) is kept in ``recipe.json``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    torch.set_num_threads(config.threads)
    set_seed(config.seed)
    template = PromptTemplate(number_format=config.number_format)
    critiques = parse_rows(rows)  # once, for the whole critiques and the drill
    examples = rows_to_examples(rows, template, render, critiques)
    if not examples:
        raise ValueError("the critique dataset is empty; nothing to train the critic on")
    drilled = config.verdict_steps > 0 or config.verdict_line_steps > 0
    drill = verdict_examples(rows, template, config.verdict_examples, config.seed, critiques) if drilled else []
    if drilled and not drill:
        raise ValueError("the verdict drill needs critiques with both correct and wrong lines")
    if config.init in ("actor", "checkpoint"):
        start = actor_checkpoint if config.init == "actor" else config.checkpoint
        if start is None:
            raise ValueError("critic init=actor needs the actor checkpoint")
        tokenizer = AutoTokenizer.from_pretrained(start)
        model = AutoModelForCausalLM.from_pretrained(start)
    else:
        tokenizer = build_tokenizer((e["prompt"] + e["completion"] for e in examples), config.model.vocab_size)
        model = build_tiny_model(config.model, tokenizer, seed=config.seed)
    expand_depth(model, config.expand_layers)
    recipe = asdict(config) | {"actor_checkpoint": str(actor_checkpoint) if config.init == "actor" else None}
    # the drills sample at random: batched by length, lines would be grouped by verdict (a wrong line carries
    # its explanation), and the verdict would swing from batch to batch instead of being learned
    def drill_phase(name: str, steps: int, learning_rate: float, line_only: bool) -> SFTPhase:
        tokens = drill_tokens(drill, tokenizer, config.max_length, line_only=line_only) if steps > 0 else []
        if tokens and config.drill_critique_share > 0:
            tokens += mixed_critiques(examples, tokenizer, config.max_length,
                                      round(len(tokens) * config.drill_critique_share / (1 - config.drill_critique_share)),
                                      config.seed)
        return SFTPhase(name, tokens, steps, learning_rate, sampling_strategy="random")

    phases = [SFTPhase("critiques", examples, config.train_steps, config.learning_rate),
              drill_phase("verdict drill, lines", config.verdict_line_steps, config.verdict_line_learning_rate, True),
              drill_phase("verdict drill", config.verdict_steps, config.verdict_learning_rate, False)]
    return sft_train(model, tokenizer, phases, config, out_dir, recipe=recipe, log_every=log_every,
                     extra={"data": data} if data else None)


def parse_rows(rows: Sequence[dict[str, Any]]) -> list[Critique]:
    """The critique of each dataset row, parsed once (a row's ``critique`` is the one critique format's text)."""
    return [Critique.parse(row["critique"], num_steps=len(row["steps"])) for row in rows]


def rows_to_examples(rows: Sequence[dict[str, Any]], template: Any, render: Any = None,
                     critiques: Sequence[Critique] | None = None) -> list[dict[str, str]]:
    """Critique-model SFT examples: the critique prompt -> the critique as the model writes it (``render``,
    by default the stepwise :func:`~critics.model_critic.model_text`)."""
    render = render or model_text
    critiques = parse_rows(rows) if critiques is None else critiques
    return [{"prompt": template.critique_prompt(row["question"], row["steps"]),
             "completion": template.critique_completion(render(critique, row["steps"], row.get("answer")))}
            for row, critique in zip(rows, critiques)]


def verdict_examples(rows: list[dict[str, Any]], template: PromptTemplate, n: int, seed: int = 0,
                     critiques: Sequence[Critique] | None = None) -> list[dict[str, str]]:
    """``n`` judged lines for the verdict drill, half wrong and half correct, in model text: ``prompt`` (the
    critique prompt, the lines before, the line's head ``Step 2:``), ``own`` (the critic's computation
    `` 51*3=153``), ``says`` (`` | says 51*3=160 | =153 =160 |``, which the critic's code reads in),
    ``verdict`` and ``tail`` (what ends the line after the verdict: the explanation of a wrong line, and the
    new line)."""
    if n <= 0:
        return []
    critiques = parse_rows(rows) if critiques is None else critiques
    lines_of = [model_lines(critique, row["steps"], row.get("answer")) for row, critique in zip(rows, critiques)]
    wrong = [(i, len(lines) - 1) for i, lines in enumerate(lines_of) if lines and not lines[-1].correct]
    right = [(i, k) for i, lines in enumerate(lines_of) for k, line in enumerate(lines) if line.correct]
    if not wrong or not right:
        return []
    rng = random.Random(seed)
    encode = template.codec.encode
    out = []
    for j in range(n):
        i, k = rng.choice(wrong if j % 2 else right)
        line = lines_of[i][k]
        prior = "".join(f"{earlier.text}\n" for earlier in lines_of[i][:k])
        row = rows[i]
        out.append({"prompt": template.critique_prompt(row["question"], row["steps"]) + encode(f"{prior}{line.head}"),
                    "own": encode(f" {line.own}"), "says": encode(line.to_verdict[len(f"{line.head} {line.own}"):]),
                    "verdict": " correct" if line.correct else " wrong",
                    "tail": f" | {line.feedback}\n" if line.feedback else "\n"})
    return out


def drill_tokens(examples: list[dict[str, str]], tokenizer: Any, max_length: int,
                 line_only: bool = False) -> list[dict[str, list[int]]]:
    """Verdict-drill lines as token ids with their labels: the loss is on the critic's own computation and the
    `` |`` that ends it (so the drill does not wear away its arithmetic, nor where it stops), on the verdict and
    on the rest of the line; never on the solution's computation nor on an end of text. Lines longer than
    ``max_length`` tokens are left out.

    ``line_only``: the line alone, from its head (``Step 2: 51*3=153 | says 51*3=160 | =153 =160 | wrong |``),
    with the loss on the verdict and the rest of the line only (without the problem the computation cannot be
    derived). Ten times shorter than the line in its critique, so hundreds of steps cost a few minutes: enough
    for a tiny model to learn the comparison, which a shorter drill in context then carries over.
    """
    out = []
    for e in examples:
        prompt = e["prompt"].rsplit("\n", 1)[-1] if line_only else e["prompt"]
        text = prompt + e["own"] + e["says"] + e["verdict"] + e["tail"]
        # the computation and the " |" that ends it (where generation stops); none of it without the problem
        own_end = len(prompt) if line_only else len(prompt) + len(e["own"]) + len(" |")
        verdict = len(text) - len(e["verdict"]) - len(e["tail"])
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) > max_length:
            continue
        labels = [tid if start >= verdict or (start >= len(prompt) and end <= own_end) else -100
                  for tid, (start, end) in zip(enc["input_ids"], enc["offset_mapping"])]
        out.append({"input_ids": enc["input_ids"], "labels": labels})
    return out


def mixed_critiques(examples: list[dict[str, str]], tokenizer: Any, max_length: int, n: int,
                    seed: int = 0) -> list[dict[str, list[int]]]:
    """``n`` whole critiques drawn from ``examples`` (with replacement past their number), tokenised as TRL does
    a prompt/completion pair (the loss on the completion and its end of text, cut at ``max_length``), to mix
    into a drill: the drill's lines then share the batches with whole critiques, whose every line keeps
    training the critic's arithmetic."""
    from trl.data_utils import common_prefix_length

    if n <= 0 or not examples:
        return []
    rng = random.Random(seed)
    picks = rng.sample(examples, n) if n <= len(examples) else [rng.choice(examples) for _ in range(n)]
    out = []
    for e in picks:
        prompt_ids = tokenizer(e["prompt"], add_special_tokens=False)["input_ids"]
        ids = tokenizer(e["prompt"] + e["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        keep = common_prefix_length(prompt_ids, ids)
        labels = [-100] * keep + ids[keep:]
        out.append({"input_ids": ids[:max_length], "labels": labels[:max_length]})
    return out


@dataclass
class HFCriticSFTConfig:
    """Fine-tuning an instruct model (any HF causal LM, a GGUF file) into a critic on chat-formatted critique
    rows, in the paper's critique format; LoRA (peft) by default, the adapter merged into the saved weights so
    ``critic=model critic.model=PATH`` loads it like any model (the adapter is kept in ``adapter/``)."""

    seed: int = 0
    base_model: str | None = None     # null: the actor's model
    rows: str | None = None           # paper-format rows (ShareGPT / Alpaca, JSON or JSONL; the paper's refinement
    # rows too) to train on as well as the run's critique data; ``only_rows`` trains on them alone
    only_rows: bool = False
    lora: bool = True                 # false: full fine-tuning
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    train_steps: int = 200
    batch_size: int = 4
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_length: int = 1024
    threads: int = 2


def chat_examples(rows: Sequence[dict[str, Any]], template: ChatTemplate,
                  critiques: Sequence[Critique] | None = None) -> list[dict[str, str]]:
    """The project's critique rows as chat SFT examples: the critique request -> the paper-format critique."""
    critiques = parse_rows(rows) if critiques is None else critiques
    return [{"prompt": template.critique_prompt(row["question"], row["steps"]),
             "completion": to_paper_text(critique, row["steps"])} for row, critique in zip(rows, critiques)]


def paper_examples(path: str | Path, template: ChatTemplate) -> list[dict[str, str]]:
    """Paper-format rows as chat SFT examples (``path`` may be ``data://...``, in the data folder): critique rows
    keep their own request and critique; refinement rows (an attempt, its critique, the refinement) give the
    critique of the attempt."""
    out = []
    for i, row in enumerate(read_rows(data_path(path), "critic_training.hf.rows")):
        try:
            refinement = from_refinement_row(row, i)
        except RowFormatError:
            parsed = from_row(row, i)  # not a refinement row: a critique row, or an error naming the row
            out.append({"prompt": template.chat(parsed.prompt), "completion": to_paper_text(parsed.critique, parsed.steps)})
            continue
        out.append({"prompt": template.critique_prompt(refinement.question, refinement.attempt),
                    "completion": to_paper_text(refinement.critique, refinement.attempt)})
    return out


def train_hf_critic(config: HFCriticSFTConfig, rows: list[dict[str, Any]], base_model: str, out_dir: str | Path,
                    data: dict[str, Any] | None = None, log_every: int = 10) -> dict[str, Any]:
    """TRL SFT of ``base_model`` (LoRA or full) on the critique rows through its chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    torch.set_num_threads(config.threads)
    set_seed(config.seed)
    folder = resolve_model(base_model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"critic_training.hf: {base_model} has no chat template; train it with the tiny recipes")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    template = ChatTemplate(tokenizer)
    examples = [] if config.only_rows else chat_examples(rows, template)
    if config.rows:
        examples += paper_examples(config.rows, template)
    if not examples:
        raise ValueError("no critique examples to train on (the run's critique data is empty and no rows were given)")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if config.lora:
        model = with_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout, config.target_modules)
    recipe = asdict(config) | {"base_model": str(base_model)}
    phase = SFTPhase("critiques", examples, config.train_steps, config.learning_rate)
    return sft_train(model, tokenizer, [phase], config, out_dir, recipe=recipe, log_every=log_every,
                     extra={"data": data} if data else None)
