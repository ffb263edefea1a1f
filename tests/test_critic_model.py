import random
from pathlib import Path

import pytest

from agents import PromptTemplate
from agents.backends import Completion
from agents.backends.hf import HFBackend
from autocritique import training_form
from critics import Critique, ModelCritic, NullCritic, OracleCritic, RandomStepCritic
from critics.model_critic import model_text, parse_model_critique, verdicts_from_checks
from envs import EnvConfig, SyntheticArithmetic, corrupt_solution
from evaluation.critic_eval import format_critic_table, label, score_critic

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = PromptTemplate(number_format="reversed")
PROBLEMS = SyntheticArithmetic(size=30, min_steps=2, max_steps=5, split="test", seed=4)[:]


class OracleTextBackend:
    """Writes, in model text, the oracle's critique of the solution in the prompt (a perfect critique model)."""

    name = "oracle-text"
    tokenizer = None

    def __init__(self, problems, extra=""):
        self.by_question = {TEMPLATE.codec.encode(p.question): p for p in problems}
        self.extra = extra

    def generate(self, prompts, sampling):
        out = []
        for prompt in prompts:
            question = prompt.split("\n", 1)[0].removeprefix("Problem: ")
            problem = self.by_question[question]
            body = prompt.split("Solution:\n", 1)[1].removesuffix("Critique:\n")
            steps = TEMPLATE.decode(body).strip().splitlines()
            text = model_text(training_form(OracleCritic().critique(problem, steps)), steps) + self.extra
            out.append([Completion(TEMPLATE.critique_completion(text), [1] * 5, [])])
        return out


def test_model_critic_reads_what_the_model_writes():
    rng = random.Random(0)
    bad = [corrupt_solution(p, rng.randint(1, p.difficulty), "operand", rng) for p in PROBLEMS]
    critic = ModelCritic(OracleTextBackend(PROBLEMS, extra="\nStep 1: trailing junk the model kept writing"), TEMPLATE)
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


def test_model_text_puts_the_solutions_value_beside_the_check():
    p = PROBLEMS[3]
    bad = corrupt_solution(p, 1, "calculation", random.Random(5))
    critique = training_form(OracleCritic().critique(p, bad.steps))
    text = model_text(critique, bad.steps)
    stated = bad.steps[0].split(": ")[1]
    assert text.splitlines()[0].startswith(f"Step 1: {stated} -> {critique.steps[0].check} wrong")
    parsed = parse_model_critique(text, len(bad.steps))
    assert parsed == critique and parsed.steps[0].check == critique.steps[0].check


def test_verdicts_from_checks_compare_in_code():
    from critics.critique import StepJudgement

    p = PROBLEMS[4]
    bad = corrupt_solution(p, 2, "calculation", random.Random(6))
    right_check = OracleCritic().critique(p, bad.steps).steps[1].check  # what step 2 should compute
    says_all_fine = Critique((StepJudgement(1, True, p.steps[0].split(": ")[1]), StepJudgement(2, True, right_check)))
    rejudged = verdicts_from_checks(says_all_fine, bad.steps)
    assert rejudged.first_error_step == 2 and right_check in rejudged.hint


def test_parse_model_critique_ignores_text_after_the_hint():
    text = "Step 1: 2+3=5 wrong | no\nVerdict: wrong, first error at step 1\nHint: Step 1 should be 2+3=5.\nStep 9: junk"
    assert parse_model_critique(text, num_steps=2).first_error_step == 1
    with pytest.raises(ValueError):
        parse_model_critique("Step 7: 1+1=2 correct\nVerdict: correct", num_steps=2)


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
    from critics.critique import StepJudgement

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
        config = CriticSFTConfig(init=init, train_steps=4, batch_size=4, max_length=448)
        summary = train_tiny_critic(config, rows, tmp_path / init, actor_checkpoint=ROOT / "checkpoints" / "tiny-actor")
        assert summary["examples"] == 32 and summary["recipe"]["init"] == init
        critic = ModelCritic(HFBackend(tmp_path / init, threads=2), TEMPLATE, max_new_tokens=24)
        critiques = critic.critique_batch(PROBLEMS[:2], [p.steps for p in PROBLEMS[:2]])
        assert len(critiques) == 2  # an untrained critic writes nonsense, which must not crash
    with pytest.raises(ValueError, match="init must be"):
        CriticSFTConfig(init="zero")
    with pytest.raises(ValueError, match="empty"):
        train_tiny_critic(CriticSFTConfig(), [], tmp_path / "none", actor_checkpoint=ROOT / "checkpoints" / "tiny-actor")
