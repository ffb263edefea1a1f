"""Real text without a real model: chat prompts, the paper's critique from instruct models, model files, every
problem source, the LM annotator switch, and ProcessBench scoring."""

import json
from pathlib import Path

import pytest

from agents.actor import Actor
from agents.backends import resolve_model
from agents.backends.gguf import package_file
from agents.prompts import REFINE_PROMPT, SOLVE_PROMPT, ChatTemplate, PromptTemplate, template_for
from autocritique.annotate import LMAnnotator
from autocritique.pipeline import AutoCritiqueConfig, build_critique_dataset, plan_sources
from core.critique import Critique, CritiqueParseError, StepJudgement, to_paper_text
from core.problem import Problem
from core.sampling import Completion
from critics.model_critic import ModelCritic
from critics.paper_format import read_critique
from envs.datasets import load_jsonl
from envs.math_env import EnvConfig
from envs.registry import ProblemsConfig, problems_for
from evaluation.critic_eval import read_processbench, score_processbench
from pipeline.config import load_config
from rollout.loop import rollout

FIXTURES = Path(__file__).parent / "data"
# a ChatML template as instruct models ship it (the tokenizer of a test needs no real model)
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class ChatTokenizer:
    chat_template = CHATML

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        from jinja2 import Template

        return Template(self.chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt)


class TextBackend:
    """Replies with fixed texts (a text-only backend, as a server without token ids is)."""

    name = "text"
    tokenizer = None

    def __init__(self, replies, tokenizer=None):
        self.replies, self.prompts, self.local_tokenizer = list(replies), [], tokenizer

    def generate(self, prompts, sampling):
        self.prompts += list(prompts)
        out = []
        for _ in prompts:
            text = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            out.append([Completion(text, [], [])] * sampling.n)
        return out


PROBLEM = Problem(id="p", question="Tom has 3 apples and buys 4 more. How many apples?", answer="7",
                  steps=("Tom has 3 + 4 = 7 apples.", "The answer is 7."), difficulty=1, source="test")


def test_template_for_picks_the_chat_template_when_the_tokenizer_has_one():
    assert isinstance(template_for(ChatTokenizer()), ChatTemplate)
    assert isinstance(template_for(None, number_format="reversed"), PromptTemplate)
    assert isinstance(template_for(ChatTokenizer(), "plain"), PromptTemplate)
    with pytest.raises(ValueError, match="no chat template"):
        template_for(None, "chat")
    with pytest.raises(ValueError, match="template must be"):
        template_for(None, "jinja")


def test_chat_prompts_solve_refine_and_critique_in_the_papers_words():
    t = ChatTemplate(ChatTokenizer())
    solve = t.header(PROBLEM.question)
    assert solve.startswith("<|im_start|>user\n" + SOLVE_PROMPT.format(question=PROBLEM.question))
    assert solve.endswith("<|im_start|>assistant\n")
    wrong = ["Tom has 3 + 4 = 8 apples.", "The answer is 8."]
    critique = Critique((StepJudgement(1, False, feedback="3 + 4 is 7."), StepJudgement(2, False, is_answer=True)))
    refine = t.header(PROBLEM.question, "Step 1 is wrong.", previous=wrong, critique=critique)
    # the multi-turn form: the attempt as the model's turn, the paper's request with the paper-format critique
    assert "<|im_start|>assistant\nTom has 3 + 4 = 8 apples.\nThe answer is 8.<|im_end|>" in refine
    assert REFINE_PROMPT.format(critique=to_paper_text(critique, wrong)) in refine
    assert "Correctness of the step: Wrong" in refine and refine.endswith("<|im_start|>assistant\n")
    review = t.critique_prompt(PROBLEM.question, wrong)
    assert "Step 1: Tom has 3 + 4 = 8 apples." in review and "Correctness of the final answer" in review
    assert t.decode("12 = 3 * 4") == "12 = 3 * 4" and t.completion(["a", "b"]) == "a\nb"


def test_a_chat_actor_refines_with_the_critique_of_its_last_attempt():
    replies = ["Tom has 3 + 4 = 8 apples.\nThe answer is 8.", "Tom has 3 + 4 = 7 apples.\nThe answer is 7."]
    backend = TextBackend(replies)
    from critics.oracle import OracleCritic

    actor = Actor(backend, ChatTemplate(ChatTokenizer()))
    [record] = rollout([PROBLEM], actor, OracleCritic(), EnvConfig(max_refinements=1), batch_size=4)
    assert record.verification.correct and record.refinement_rounds == 1
    assert "Tom has 3 + 4 = 8 apples." in backend.prompts[1] and "step-by-step critic" in backend.prompts[1]


PAPER_REPLY = ("Step 1:\nStep sentence: Tom has 3 + 4 = 8 apples.\nCorrectness of the step: Wrong\nExplanation: 3 + 4 "
               "is 7.\n\nCorrectness of the final answer: Wrong\nExplanation: follows the slip.")


def test_instruct_critics_write_the_papers_format_read_to_the_solutions_steps():
    steps = ["Tom has 3 apples.", "He buys 4 more: 3 + 4 = 8.", "The answer is 8."]
    fitted = read_critique(PAPER_REPLY, len(steps), fit=True)
    assert fitted.first_error_step == 1 and fitted.steps[-1].is_answer and fitted.steps[-1].index == 3
    with pytest.raises(CritiqueParseError):
        read_critique(PAPER_REPLY, len(steps))  # without fit the paper's own step count must match
    critic = ModelCritic(TextBackend([PAPER_REPLY, "no critique here"]), ChatTemplate(ChatTokenizer()),
                         max_new_tokens=64, generation="whole")
    ok, bad = critic.critique_batch([PROBLEM, PROBLEM], [steps, steps])
    assert ok.first_error_step == 1 and bad.abstained and critic.parse_failures == 1


def test_model_files_from_packages_and_gguf_paths(tmp_path):
    assert resolve_model("some/hub-id") == "some/hub-id"
    assert package_file("pkg://json/__init__.py").name == "__init__.py"
    with pytest.raises(FileNotFoundError, match="no installed package"):
        resolve_model("pkg://no_such_package_xyz/model.gguf")
    with pytest.raises(FileNotFoundError, match="GGUF model file not found"):
        resolve_model(tmp_path / "missing.gguf")


def test_file_sources_sample_by_seed_per_level_and_read_their_train_split(data_dir):
    cfg = ProblemsConfig(name="gsm8k")
    a = problems_for(cfg, "eval", 0, "test", size=20)
    assert a == problems_for(cfg, "eval", 0, "test", size=20) and a != problems_for(cfg, "eval", 1, "test", size=20)
    assert [p.id for p in a] != [f"gsm8k-test-{i}" for i in range(1, 21)]  # a sample, not the file's head
    per_level = problems_for(cfg, "test_time", 0, "test", size=3, levels=[2, 4])
    assert [p.difficulty for p in per_level] == [2, 2, 2, 4, 4, 4]
    assert all(p.id.startswith("gsm8k-train-") for p in problems_for(cfg, "critique_data", 0, "train", size=5))
    math = ProblemsConfig(name="math", train_split="test", max_steps=5)
    assert {p.difficulty for p in problems_for(math, "calibrate", 0, "train", size=2, levels=math.levels)} == set(range(1, 6))


def test_any_jsonl_file_is_a_problem_source(tmp_path):
    rows = [{"problem": "What is $1+1$?", "answer": "2", "level": "Level 1"},
            {"question": "Two and two?", "answer": "So 2+2=4.\n#### 4"},
            {"question": "Three times three?", "answer": "9", "level": 2}]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    problems = list(load_jsonl(str(path)))
    assert [p.answer for p in problems] == ["2", "4", "9"] and [p.difficulty for p in problems] == [1, 1, 2]
    cfg = load_config(["problems=jsonl", f"problems.path={path}"])
    assert cfg.problems.name == "jsonl" and len(problems_for(cfg.problems, "eval", 0, "test")) == 3
    with pytest.raises(FileNotFoundError, match="problems.path"):
        problems_for(load_config(["problems=jsonl"]).problems, "eval", 0, "test")


def test_critique_data_on_real_problems_says_what_it_does_instead_and_the_lm_annotator_counts_failures(data_dir):
    problems = problems_for(ProblemsConfig(name="gsm8k"), "critique_data", 0, "train", size=6)
    config = AutoCritiqueConfig(sampled_problems=0, located_problems=2, typed_problems=2, reference_problems=2,
                                refine_samples=0)
    assert any("error-location control" in n for n in plan_sources(problems, config))
    continuation = "She has 5 + 5 = 11 left.\nThe answer is 11."
    actor = Actor(TextBackend([continuation]), ChatTemplate(ChatTokenizer()))
    annotator = LMAnnotator(TextBackend([PAPER_REPLY, "garbage"]), template=ChatTemplate(ChatTokenizer()))
    rows, stats = build_critique_dataset(problems, actor, config, annotator=annotator)
    assert stats["responses"].get("prompted") == 2 and stats["annotator"] == "lm" and stats["notes"]
    assert stats["rows"] == len(rows) and stats["dropped"].get("unparsable annotator output", 0) >= 1
    assert sum(stats["annotator_parse_failures"].values()) == stats["dropped"]["unparsable annotator output"]
    assert all(r["dataset"] == "gsm8k" and r["annotator"] == "lm" for r in rows)
    assert "Gold answer:" in annotator.backend.prompts[0] and annotator.backend.prompts[0].startswith("<|im_start|>user")


def test_processbench_rows_and_scores():
    rows = read_processbench(str(FIXTURES / "processbench_fixture.jsonl"))
    assert len(rows) == 6 and {r.label for r in rows} == {-1, 0, 1, 2}
    perfect = [Critique((StepJudgement(r.label + 1, False),)) if r.label >= 0 else Critique((StepJudgement(1, True),))
               for r in rows]
    assert score_processbench(perfect, rows)["f1"] == 1.0
    silent = [Critique((StepJudgement(1, True),)) for _ in rows]
    s = score_processbench(silent, rows)
    assert s["accuracy_correct"] == 1.0 and s["accuracy_erroneous"] == 0.0 and s["f1"] == 0.0


@pytest.mark.parametrize("row, error", [
    ({"problem": "p", "steps": [], "label": -1}, "non-empty list"),
    ({"problem": "p", "steps": ["a"], "label": 3}, "not -1 or a step index"),
    ({"steps": ["a"], "label": 0}, "KeyError"),
])
def test_bad_processbench_rows_name_their_line(tmp_path, row, error):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"problem": "ok", "steps": ["a"], "label": -1}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=rf"bad.jsonl:2: .*{error}"):
        read_processbench(str(path))


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (Path(__file__).parent.parent / "configs" / "recipe").glob("*.yaml")))
def test_every_recipe_composes_resolves_and_every_stage_takes_it(recipe):
    from omegaconf import OmegaConf

    from pipeline.checks import check_config

    cfg = load_config([f"recipe={recipe}"])
    OmegaConf.to_yaml(cfg)  # every interpolation resolves
    assert cfg.stages and check_config(cfg) == []
    if recipe == "paper_tiny":  # the tiny world at full size: the default run's stages and model, bigger
        assert cfg.problems.name == "synthetic" and cfg.stages == load_config([]).stages
        assert cfg.critic_training.init == "shipped" and cfg.test_time.k_max == 8
        return
    assert cfg.problems.name in ("gsm8k", "math") and cfg.actor.model
    # a real source under any recipe, and the same checks for MATH
    assert check_config(load_config([f"recipe={recipe}", "problems=math"])) == []


def test_a_run_stops_before_its_first_stage_on_a_bad_name_anywhere(tmp_path):
    from pipeline import run_stages
    from pipeline.config import ConfigError

    cfg = load_config([f"run_dir={tmp_path}", "self_improve.algorithms=[rft,ppo]", "test_time.critics=[none,orcale]",
                       "self_improve.actor=checkpoints/no-such-actor"])
    with pytest.raises(ConfigError) as err:
        run_stages(cfg)
    assert "'ppo'" in str(err.value) and "'orcale'" in str(err.value) and not (tmp_path / "stages").exists()
    assert "self_improve.actor: no checkpoint at 'checkpoints/no-such-actor'" in str(err.value)
    from pipeline.checks import check_config

    assert check_config(load_config(["problems.distractors=2"])) == []
    assert check_config(load_config(["problems=gsm8k", "problems.distractors=2"])) == [
        "problems.distractors adds sentences to generated (synthetic) questions; problems=gsm8k reads its rows as they are"]
    assert check_config(load_config(["problems.distractors=-1"])) == ["problems.distractors=-1 must be >= 0"]
