import math
import random
from pathlib import Path

import pytest

from agents import PromptTemplate
from agents.backends import Completion, truncate_at_stop
from agents.backends.hf import HFBackend
from autocritique import training_form
from critics import Critique, ModelCritic, NullCritic, OracleCritic, RandomStepCritic
from critics.model_critic import model_text, parse_model_text, parse_whole_critique, side_by_side
from envs import EnvConfig, SyntheticArithmetic, corrupt_solution
from evaluation.critic_eval import label, score_critic
from evaluation.report import format_critic_table

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = PromptTemplate(number_format="reversed")
PROBLEMS = SyntheticArithmetic(size=30, min_steps=2, max_steps=5, split="test", seed=4)[:]


class OracleTextBackend:
    """A perfect critique model: continues, in model text, the oracle's critique of the solution in the prompt
    (stepwise or whole), up to the stop string, as a trained critic would."""

    name = "oracle-text"
    tokenizer = None

    def __init__(self, problems, extra="", whole=False):
        self.by_question = {TEMPLATE.codec.encode(p.question): p for p in problems}
        self.extra, self.whole = extra, whole

    def generate(self, prompts, sampling):
        out = []
        for prompt in prompts:
            question = prompt.split("\n", 1)[0].removeprefix("Problem: ")
            problem = self.by_question[question]
            head, _, written = prompt.partition("Critique:\n")
            steps = TEMPLATE.decode(head.split("Solution:\n", 1)[1]).strip().splitlines()
            full = TEMPLATE.critique_completion(self.critique_text(problem, steps) + self.extra)
            assert full.startswith(written), (written, full)
            rest = full[len(written):]
            if sampling.stop:
                rest = truncate_at_stop(rest, sampling.stop)[0]
            out.append([Completion(rest, [1] * 5, [])])
        return out

    def critique_text(self, problem, steps):
        critique = training_form(OracleCritic().critique(problem, steps))
        return critique.render() if self.whole else model_text(critique, steps, problem.answer)


@pytest.mark.parametrize("whole", [False, True])
def test_model_critic_reads_what_the_model_writes(whole):
    rng = random.Random(0)
    bad = [corrupt_solution(p, rng.randint(1, p.difficulty), "operand", rng) for p in PROBLEMS]
    junk = "\nStep 1: trailing junk the model kept writing" if whole else ""
    critic = ModelCritic(OracleTextBackend(PROBLEMS, extra=junk, whole=whole), TEMPLATE,
                         generation="whole" if whole else "stepwise")
    critiques = critic.critique_batch(PROBLEMS, [b.steps for b in bad])
    assert critic.parse_failures == 0 and critic.calls == len(PROBLEMS)
    assert sum(c.first_error_step == b.error_step for c, b in zip(critiques, bad)) >= 0.95 * len(bad)
    assert all(c.hint for c in critiques)
    assert all(c.is_correct for c in critic.critique_batch(PROBLEMS, [p.steps for p in PROBLEMS]))


def test_unparsable_model_output_abstains_and_is_counted():
    class Babble:
        name, tokenizer = "babble", None

        def generate(self, prompts, sampling):
            return [[Completion("the the the 12 wrong correct", [1], [])] for _ in prompts]

    critic = ModelCritic(Babble(), TEMPLATE)
    critiques = critic.critique_batch(PROBLEMS[:3], [p.steps for p in PROBLEMS[:3]])
    assert critic.parse_failures == 3 and all(c.abstained and c.is_correct for c in critiques)
    assert "unrecognised critique line" in critiques[0].extras["error"]


def test_model_text_puts_the_critics_computation_before_the_solutions():
    p = PROBLEMS[3]
    bad = corrupt_solution(p, 1, "calculation", random.Random(5))
    critique = training_form(OracleCritic().critique(p, bad.steps))
    text = model_text(critique, bad.steps, p.answer)
    stated = bad.steps[0].split(": ")[1]
    own, value = critique.steps[0].check, stated.split("=")[-1]
    assert text.splitlines() == [f"Step 1: {own} | says {stated} | ={own.split('=')[-1].zfill(3)} ={value.zfill(3)} | wrong | "
                                 f"{critique.steps[0].feedback}"]
    parsed = parse_model_text(text, bad.steps)
    assert parsed.steps == critique.steps and parsed.hint == critique.hint  # "Recompute step 1: ..."
    right = training_form(OracleCritic().critique(p, p.steps))
    lines = model_text(right, p.steps, p.answer).splitlines()
    assert len(lines) == len(p.steps) and lines[-1] == (f"Final answer: {p.answer} | says {p.answer} | "
                                                      f"={p.answer.zfill(3)} ={p.answer.zfill(3)} | correct")
    assert parse_model_text("\n".join(lines), p.steps).is_correct


def test_results_side_by_side_line_up_digit_for_digit():
    assert side_by_side("51*3=153", "51*3=16") == "=153 =016"
    assert side_by_side("84", "7.5") == "=084 =7.5" and side_by_side("", "12") == "= =012"
    # in model text (least-significant digit first) each digit keeps its place: the k-th digits are 5 apart
    assert TEMPLATE.codec.encode("=153 =016") == "=351 =610"


def test_a_wrong_answer_line_carries_the_gold_answer_as_the_critics_own():
    p = next(q for q in PROBLEMS if q.difficulty >= 2)
    short = list(p.steps[:1]) + [f"Answer: {p.steps[0].split('=')[-1]}"]
    critique = training_form(OracleCritic().critique(p, short))
    line = model_text(critique, short, p.answer).splitlines()[-1]
    assert line.startswith(f"Final answer: {p.answer} | says ") and "| wrong |" in line
    assert parse_model_text(model_text(critique, short, p.answer), short).hint == f"The answer should be {p.answer}."


def test_checks_mode_compares_the_critics_computation_in_code():
    class ComputesRightSaysCorrect(OracleTextBackend):
        def critique_text(self, problem, steps):  # every line, each called correct
            return model_text(OracleCritic().critique(problem, steps), steps, problem.answer).replace("wrong", "correct")

    p = PROBLEMS[4]
    bad = corrupt_solution(p, 2, "calculation", random.Random(6))
    fooled = ModelCritic(ComputesRightSaysCorrect([p]), TEMPLATE)
    assert fooled.critique(p, bad.steps).is_correct
    checks = ModelCritic(ComputesRightSaysCorrect([p]), TEMPLATE, verdicts="checks").critique(p, bad.steps)
    right_check = OracleCritic().critique(p, bad.steps).steps[1].check  # what step 2 should compute
    assert checks.first_error_step == 2 and right_check in checks.hint


def test_parsers_reject_what_is_not_a_critique_and_ignore_text_after_the_hint():
    text = "Step 1: 2+3=5 wrong | no\nVerdict: wrong, first error at step 1\nHint: Step 1 should be 2+3=5.\nStep 9: junk"
    assert parse_whole_critique(text, num_steps=2).first_error_step == 1
    with pytest.raises(ValueError):
        parse_whole_critique("Step 7: 1+1=2 correct\nVerdict: correct", num_steps=2)
    steps = ["Step 1: 2+3=6", "Answer: 6"]
    parsed = parse_model_text("Step 1: 2+3=5 | says 2+3=6 | =005 =006 | wrong | off by one", steps)
    assert parsed.hint == "Recompute step 1: 2+3=5."
    # a line without the side-by-side results still parses
    assert parse_model_text("Step 1: 2+3=5 | says 2+3=6 | wrong", steps).first_error_step == 1
    for bad in ("Step 1: 2+3=5 correct", "Step 3: 1 | says 1 | correct", "", "Step 1: 5 | says 6 | maybe"):
        with pytest.raises(ValueError):
            parse_model_text(bad, steps)


def test_model_critic_in_the_environment_refines_the_flagged_step():
    from envs import MathReasoningEnv

    p = PROBLEMS[2]
    bad = corrupt_solution(p, 2, "calculation", random.Random(1))
    env = MathReasoningEnv([p], ModelCritic(OracleTextBackend([p]), TEMPLATE), EnvConfig(max_refinements=1))
    env.reset(seed=0)
    observation, _, terminated, _, info = env.step("\n".join(bad.steps))
    assert not terminated and info["refined"] and "Step 2" in observation["feedback"]
    assert list(info["record"].steps) == list(p.steps[:1])


def test_score_critic_on_hand_made_critiques():
    from core.critique import StepJudgement

    def says(first):
        if first is None:
            return Critique((StepJudgement(1, True),))
        return Critique(tuple(StepJudgement(i, i < first) for i in range(1, first + 1)))

    p = PROBLEMS[0]
    wrong = [label(p, corrupt_solution(p, 1, "calculation", random.Random(i)).steps, "t") for i in range(4)]
    right = [label(p, p.steps, "t") for _ in range(4)]
    assert all(s.wrong and s.first_error == 1 for s in wrong) and not any(s.wrong for s in right)
    # catches 3 of 4 wrong (2 at the right step), passes 3 of 4 right
    critiques = [says(1), says(1), says(2), says(None)] + [says(None)] * 3 + [says(2)]
    s = score_critic(critiques, wrong + right)
    assert (s["caught"], s["false_alarms"], s["located"]) == (3, 1, 2)
    assert s["balanced_accuracy"] == 0.75 and s["location_accuracy"] == round(2 / 3, 4)
    assert s["f1_wrong"] == 0.75  # precision 3/4, recall 3/4
    always = score_critic([NullCritic().critique(x.problem, x.steps) for x in wrong + right], wrong + right)
    assert always["balanced_accuracy"] == 0.5 and always["f1_wrong"] == 0.0 and always["location_accuracy"] is None
    rnd = RandomStepCritic(seed=0)
    many = [label(q, q.steps, "t") for q in PROBLEMS]
    flagged = sum(not rnd.critique(x.problem, x.steps).is_correct for x in many)
    assert 5 < flagged < 25
    table = format_critic_table({"hand": {"natural": s}})
    assert "| hand | 0.75 | 0.75 | 0.67 |" in table
    with pytest.raises(ValueError, match="critiques for"):
        score_critic(critiques[:2], wrong)


def test_critic_training_from_the_actor_and_from_scratch(tmp_path):
    from trainers.critic_sft import CriticSFTConfig, train_tiny_critic

    rows = []
    rng = random.Random(0)
    for p in PROBLEMS[:16]:
        bad = corrupt_solution(p, 1, "calculation", rng)
        for steps in (p.steps, bad.steps):
            c = training_form(OracleCritic().critique(p, steps))
            rows.append({"question": p.question, "steps": list(steps), "critique": c.render()})
    for init in ("actor", "scratch"):
        config = CriticSFTConfig(init=init, train_steps=4, batch_size=4, max_length=448, verdict_line_steps=0,
                                 verdict_steps=0)
        summary = train_tiny_critic(config, rows, tmp_path / init, actor_checkpoint=ROOT / "checkpoints" / "tiny-actor")
        assert summary["examples"] == 32 and summary["recipe"]["init"] == init
        assert [p["name"] for p in summary["phases"]] == ["critiques"]
        critic = ModelCritic(HFBackend(tmp_path / init, threads=2), TEMPLATE, max_new_tokens=24)
        critiques = critic.critique_batch(PROBLEMS[:2], [p.steps for p in PROBLEMS[:2]])
        assert len(critiques) == 2  # an untrained critic writes nonsense, which must not crash
    # the verdict drills alone, continuing a trained critic: only the drill phases run, on their own examples
    # with as many whole critiques mixed in (drill_critique_share=0.5)
    drill = CriticSFTConfig(init="checkpoint", checkpoint=str(tmp_path / "actor"), train_steps=0, verdict_steps=3,
                            verdict_line_steps=2, verdict_examples=24, batch_size=4, max_length=448,
                            drill_critique_share=0.5)
    summary = train_tiny_critic(drill, rows, tmp_path / "drilled", log_every=1)
    assert [(p["name"], p["examples"], p["train_steps"]) for p in summary["phases"]] == [
        ("verdict drill, lines", 48, 2), ("verdict drill", 48, 3)]
    assert {h["phase"] for h in summary["log"]} == {"verdict drill, lines", "verdict drill"}
    assert (tmp_path / "drilled" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="init must be"):
        CriticSFTConfig(init="zero")
    with pytest.raises(ValueError, match="empty"):
        train_tiny_critic(CriticSFTConfig(), [], tmp_path / "none", actor_checkpoint=ROOT / "checkpoints" / "tiny-actor")


def test_a_deeper_critic_starts_as_the_model_it_grew_from_and_trains_its_new_layers(tmp_path):
    """Block expansion: the copied layers start as pass-throughs (the same logits, the same greedy tokens, on the
    library's forward and on the slot engine's), then their zeroed projections learn."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agents.backends import SamplingParams
    from agents.tiny import expand_depth
    from trainers.critic_sft import CriticSFTConfig, train_tiny_critic

    actor = ROOT / "checkpoints" / "tiny-actor"
    base, grown = (AutoModelForCausalLM.from_pretrained(actor).eval() for _ in range(2))
    assert expand_depth(grown, 2) is grown and len(grown.model.layers) == 6 == grown.config.num_hidden_layers
    assert [layer.self_attn.layer_idx for layer in grown.model.layers] == list(range(6))
    assert grown.model.layers[2].self_attn.o_proj.weight.abs().sum() == 0  # the copy of layer 1 after it
    assert torch.equal(grown.model.layers[2].self_attn.q_proj.weight, grown.model.layers[1].self_attn.q_proj.weight)
    ids = torch.tensor([[5, 40, 41, 17, 9, 77, 3]])
    with torch.no_grad():
        assert torch.equal(base(ids).logits, grown(ids).logits)
    prompts = [TEMPLATE.prompt(p.question) for p in PROBLEMS[:3]]
    outputs = [[c.token_ids for group in HFBackend(model, AutoTokenizer.from_pretrained(actor), threads=2,
                                                        engine=engine).generate(prompts, SamplingParams(max_new_tokens=30))
                for c in group] for model in (base, grown) for engine in ("generate", "slots")]
    assert all(out == outputs[0] for out in outputs) and len(outputs[0]) == 3
    with pytest.raises(ValueError, match="equal groups"):
        expand_depth(AutoModelForCausalLM.from_pretrained(actor), 3)
    with pytest.raises(ValueError, match="expand_layers"):
        CriticSFTConfig(expand_layers=-1)

    rows = []
    rng = random.Random(0)
    for p in PROBLEMS[:8]:
        bad = corrupt_solution(p, 1, "calculation", rng)
        for steps in (p.steps, bad.steps):
            rows.append({"question": p.question, "steps": list(steps),
                         "critique": training_form(OracleCritic().critique(p, steps)).render()})
    config = CriticSFTConfig(init="actor", expand_layers=4, train_steps=3, batch_size=4, verdict_line_steps=0,
                             verdict_steps=0)
    summary = train_tiny_critic(config, rows, tmp_path / "deep", actor_checkpoint=actor)
    assert summary["recipe"]["expand_layers"] == 4
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "deep")
    assert trained.config.num_hidden_layers == 8
    assert all(trained.model.layers[i].mlp.down_proj.weight.abs().sum() > 0 for i in (1, 3, 5, 7))


def test_verdict_drill_lines_are_balanced_and_train_the_computation_and_verdict_only():
    from transformers import AutoTokenizer

    from trainers.critic_sft import drill_tokens, verdict_examples

    rng = random.Random(3)
    rows = []
    for p in PROBLEMS:
        for steps in (p.steps, corrupt_solution(p, rng.randint(1, p.difficulty), "calculation", rng).steps):
            rows.append({"question": p.question, "steps": list(steps), "answer": p.answer,
                         "critique": training_form(OracleCritic().critique(p, steps)).render()})
    examples = verdict_examples(rows, TEMPLATE, 40, seed=1)
    assert len(examples) == 40 and examples == verdict_examples(rows, TEMPLATE, 40, seed=1)
    assert [e["verdict"] for e in examples].count(" wrong") == [e["verdict"] for e in examples].count(" correct") == 20
    for e in examples:
        assert e["prompt"].endswith(":") and e["says"].startswith(" | says ") and e["says"].endswith(" |")
        # a "wrong" line is one whose own computation differs from the solution's
        own, says = TEMPLATE.decode(e["own"]).strip(), TEMPLATE.decode(e["says"])
        stated, aligned = says[len(" | says "):-2].split(" | ")
        mine, theirs = aligned.split(" ")
        assert mine.lstrip("=0") == own.split("=")[-1].lstrip("0") and len(mine) == len(theirs) == 4
        assert (own != stated) == (e["verdict"] == " wrong")
    assert verdict_examples(rows, TEMPLATE, 0) == []

    tokenizer = AutoTokenizer.from_pretrained(ROOT / "checkpoints" / "tiny-critic")
    tokens = drill_tokens(examples, tokenizer, max_length=448)
    assert len(tokens) == 40
    for e, t in zip(examples, tokens):
        assert tokenizer.decode(t["input_ids"]) == e["prompt"] + e["own"] + e["says"] + e["verdict"] + e["tail"]
        # the loss sees exactly the critic's own computation (with the " |" that ends it) and the verdict onwards
        trained = tokenizer.decode([i for i in t["labels"] if i != -100])
        assert trained == e["own"] + " |" + e["verdict"] + e["tail"], (trained, e)
        assert e["tail"].endswith("\n") and (e["tail"] == "\n") == (e["verdict"] == " correct")
    assert drill_tokens(examples, tokenizer, max_length=20) == []  # too long: left out, never cut
    for e, t in zip(examples, drill_tokens(examples, tokenizer, max_length=448, line_only=True)):
        line = e["prompt"].rsplit("\n", 1)[-1] + e["own"] + e["says"] + e["verdict"] + e["tail"]
        assert tokenizer.decode(t["input_ids"]) == line and line.startswith(("Step ", "Final answer:"))
        assert tokenizer.decode([i for i in t["labels"] if i != -100]) == e["verdict"] + e["tail"]


def test_whole_critiques_mixed_into_a_drill_train_the_completion_and_its_end():
    from transformers import AutoTokenizer

    from trainers.critic_sft import CriticSFTConfig, mixed_critiques, rows_to_examples

    rows = [{"question": p.question, "steps": list(p.steps), "answer": p.answer,
             "critique": training_form(OracleCritic().critique(p, p.steps)).render()} for p in PROBLEMS[:6]]
    examples = rows_to_examples(rows, TEMPLATE)
    tokenizer = AutoTokenizer.from_pretrained(ROOT / "checkpoints" / "tiny-critic")
    mixed = mixed_critiques(examples, tokenizer, 448, 4, seed=2)
    assert len(mixed) == 4 and mixed == mixed_critiques(examples, tokenizer, 448, 4, seed=2)
    completions = {e["completion"] for e in examples}
    for t in mixed:
        assert len(t["input_ids"]) == len(t["labels"])
        trained = [i for i in t["labels"] if i != -100]
        assert trained[-1] == tokenizer.eos_token_id and tokenizer.decode(trained[:-1]) in completions
    assert len(mixed_critiques(examples, tokenizer, 448, 15)) == 15  # more than there are: drawn again
    assert all(len(t["input_ids"]) == 30 for t in mixed_critiques(examples, tokenizer, 30, 3))  # cut, as TRL cuts
    assert mixed_critiques(examples, tokenizer, 448, 0) == []
    with pytest.raises(ValueError, match="drill_critique_share"):
        CriticSFTConfig(drill_critique_share=1.0)


def test_critic_training_command_records_what_its_data_was(tmp_path):
    import json

    from autocritique import write_dataset
    from trainers.__main__ import main

    rows = [{"question": p.question, "steps": list(p.steps), "answer": p.answer,
             "critique": training_form(OracleCritic().critique(p, p.steps)).render()} for p in PROBLEMS[:8]]
    write_dataset(tmp_path / "data", rows, {"rows": len(rows), "config": {"seed": 5}})
    main(["critic", "--data", str(tmp_path / "data" / "critiques.jsonl"), "--out", str(tmp_path / "critic"),
          "--set", "train_steps=2", "--set", "batch_size=4", "--set", "verdict_line_steps=0", "--set", "verdict_steps=0"])
    recipe = json.loads((tmp_path / "critic" / "recipe.json").read_text())
    assert recipe["data"] == {"rows": 8, "config": {"seed": 5}} and recipe["recipe"]["train_steps"] == 2


class ScoredOracleText(OracleTextBackend):
    """The oracle-text critic with a ``score``: every line is likely except the continuations in ``doubted``."""

    def __init__(self, problems, doubted=()):
        super().__init__(problems)
        self.doubted, self.generated, self.scored = set(doubted), 0, []

    def generate(self, prompts, sampling):
        self.generated += len(prompts)
        return super().generate(prompts, sampling)

    def score(self, prompts, continuations):
        self.scored += [TEMPLATE.decode(c) for c in continuations]
        return [math.log(0.001) if TEMPLATE.decode(c).strip(" |") in self.doubted else math.log(0.5)
                for c in continuations]


def test_likelihood_verdicts_judge_only_the_lines_the_model_doubts():
    p = next(q for q in PROBLEMS if q.difficulty >= 3)
    bad = corrupt_solution(p, 2, "calculation", random.Random(7))
    wrong_line = bad.steps[1].split(": ", 1)[1]
    backend = ScoredOracleText([p], doubted={wrong_line})
    critic = ModelCritic(backend, TEMPLATE, verdicts="likelihood", accept_probability=0.1)
    critique = critic.critique(p, bad.steps)
    # step 1 passed on its likelihood, step 2 was doubted, re-derived and judged wrong; nothing after it is read
    assert critique.first_error_step == 2 and critique.hint == OracleCritic().critique(p, bad.steps).hint
    assert backend.scored == [f" {bad.steps[0].split(': ', 1)[1]} |", f" {wrong_line} |"]
    assert backend.generated == 2 and critique.extras["accepted_by_likelihood"] == 1
    # a scorer that finds every line likely passes the flawed solution without generating anything
    trusting = ScoredOracleText([p])
    assert ModelCritic(trusting, TEMPLATE, verdicts="likelihood").critique(p, bad.steps).is_correct
    assert trusting.generated == 0
    with pytest.raises(ValueError, match="accept_probability"):
        ModelCritic(trusting, TEMPLATE, verdicts="likelihood", accept_probability=0)
    with pytest.raises(ValueError, match="needs generation='stepwise'"):
        ModelCritic(trusting, TEMPLATE, verdicts="likelihood", generation="whole")
    with pytest.raises(ValueError, match="verdicts must be one of"):
        ModelCritic(trusting, TEMPLATE, verdicts="maybe")
