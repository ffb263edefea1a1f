import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.actor import Actor, split_completion_lines
from agents.backends import Completion, SamplingParams, truncate_at_stop
from agents.backends.hf import HFBackend
from agents.codec import NumberCodec
from agents.prompts import PromptTemplate
from agents.tiny import TinyModelConfig, build_tiny_model, build_tokenizer
from critics import OracleCritic
from envs import EnvConfig, MathReasoningEnv, SyntheticArithmetic, corrupt_solution
from rollout import RolloutStats, rollout

TEMPLATE = PromptTemplate(number_format="reversed")
PROBLEMS = SyntheticArithmetic(size=64, min_steps=2, max_steps=5, split="test", seed=3)


@pytest.fixture(scope="module")
def tokenizer():
    corpus = [TEMPLATE.prompt(p.question) + TEMPLATE.completion(p.steps)
              for p in SyntheticArithmetic(size=500, seed=0)]
    return build_tokenizer(corpus)


@pytest.fixture(scope="module")
def random_backend(tokenizer):
    model = build_tiny_model(TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2), tokenizer, seed=0)
    return HFBackend(model, tokenizer, batch_size=8)


def test_reversed_codec_is_an_involution_that_spares_step_numbers():
    codec = NumberCodec("reversed")
    assert codec.encode("Step 12: 51-15=36") == "Step 12: 15-51=63"
    assert codec.encode("Ann has 120 apples.") == "Ann has 021 apples."
    for text in ["Step 3: 100/4=25", "Answer: 1000", "Step 10: 7+8=15\nAnswer: 15"]:
        assert codec.decode(codec.encode(text)) == text
    assert NumberCodec("plain").encode("51") == "51"
    with pytest.raises(ValueError, match="valid: plain, reversed"):
        NumberCodec("roman")


def test_prompt_template():
    p = PROBLEMS[0]
    prompt = TEMPLATE.prompt(p.question, p.steps[:1], feedback="Step 2 is wrong: 3*6 is 18, not 25.")
    assert prompt.startswith("Problem: ") and "\nFeedback: Step 2 is wrong: 3*6 is 81, not 52.\nSolution:\n" in prompt
    assert prompt.endswith(NumberCodec("reversed").encode(p.steps[0]) + "\n")
    assert TEMPLATE.decode(TEMPLATE.completion(p.steps)) == "\n".join(p.steps)


def test_tokenizer_round_trips_text_exactly(tokenizer):
    for text in [TEMPLATE.prompt(PROBLEMS[1].question), "Hello, World! {x} \\frac 42\n\n  tabs\tok"]:
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer.convert_ids_to_tokens(tokenizer("123")["input_ids"]) == ["1", "2", "3"]


def test_completion_lines_keep_their_sampled_ids(tokenizer):
    text = "Step 1: 2*3=6\n\nStep 2: 1+6=7\nAnswer: 7"
    ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    lines = split_completion_lines(tokenizer, ids, PromptTemplate())
    assert [line.text for line in lines] == ["Step 1: 2*3=6", "Step 2: 1+6=7", "Answer: 7"]
    assert all(line.exact for line in lines)
    assert tokenizer.decode(lines[0].ids) == "Step 1: 2*3=6\n"


def test_stop_strings():
    assert truncate_at_stop("Step 1: 2\nStep 2", ["\n"]) == ("Step 1: 2\n", True)
    assert truncate_at_stop("abc", ["\n"]) == ("abc", False)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)


def test_hf_backend_batches_samples_and_logprobs(random_backend):
    prompts = [TEMPLATE.prompt(p.question) for p in PROBLEMS[:5]]
    out = random_backend.generate(prompts, SamplingParams(max_new_tokens=12, temperature=1.0, n=3, seed=1,
                                                          logprobs=True))
    assert len(out) == 5 and all(len(row) == 3 for row in out)
    c = out[0][0]
    assert 1 <= len(c.token_ids) <= 12 and len(c.logprobs) == len(c.token_ids)
    assert all(lp <= 0 for lp in c.logprobs)
    assert c.prompt_token_ids == random_backend.encode(prompts[0])
    again = random_backend.generate(prompts, SamplingParams(max_new_tokens=12, temperature=1.0, n=3, seed=1))
    assert [[x.token_ids for x in row] for row in again] == [[x.token_ids for x in row] for row in out]
    greedy = random_backend.generate(prompts[:2], SamplingParams(max_new_tokens=8, stop=("\n",)))
    assert all(g[0].text.count("\n") <= 1 for g in greedy)


def test_hf_score_is_the_log_probability_greedy_generation_reports(random_backend):
    prompts = [TEMPLATE.prompt(p.question) for p in PROBLEMS[:4]]
    out = random_backend.generate(prompts, SamplingParams(max_new_tokens=10, logprobs=True))
    texts = [row[0].text for row in out]
    scores = random_backend.score(prompts, texts)
    assert scores == pytest.approx([sum(row[0].logprobs) for row in out], abs=1e-3)
    small_batches = HFBackend(random_backend.model, random_backend.tokenizer, batch_size=3)  # 3 + 1, left-padded
    assert small_batches.score(prompts, texts) == pytest.approx(scores, abs=1e-3)
    ids = random_backend.score([random_backend.encode(prompts[0])], [texts[0]])  # a prompt given as token ids
    assert ids[0] == pytest.approx(scores[0], abs=1e-3) and ids[0] < 0
    with pytest.raises(ValueError, match="continuation 0 is empty"):
        random_backend.score(prompts[:1], [""])
    with pytest.raises(ValueError, match="1 prompts but 2 continuations"):
        random_backend.score(prompts[:1], ["a", "b"])


def test_garbage_completions_never_crash_the_loop(random_backend):
    actor = Actor(random_backend, TEMPLATE, SamplingParams(max_new_tokens=24, temperature=1.0, seed=0))
    records = rollout(list(PROBLEMS[:12]), actor, OracleCritic(), EnvConfig(max_refinements=2), batch_size=5)
    assert len(records) == 12 and all(r.done for r in records)
    step_actor = Actor(random_backend, TEMPLATE, SamplingParams(max_new_tokens=16, temperature=1.0, seed=0),
                       action_unit="step")
    records = rollout(list(PROBLEMS[:4]), step_actor, OracleCritic(),
                      EnvConfig(action_unit="step", critique_timing="step", max_turns=6), batch_size=4)
    assert all(r.done and r.turns <= 6 for r in records)


class ReplayBackend:
    """Replies with fixed solutions, as token ids of the real tokenizer: first a wrong one, then the fix."""

    name = "replay"

    def __init__(self, tokenizer, replies):
        self.tokenizer, self.replies, self.calls = tokenizer, replies, 0

    def generate(self, prompts, sampling):
        out = []
        for prompt in prompts:
            text = self.replies[min(self.calls, len(self.replies) - 1)]
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            out.append([Completion(text, ids, list(prompt))])
        self.calls += 1
        return out


def test_refinement_prompt_reuses_the_sampled_token_ids(tokenizer):
    problem = PROBLEMS[4]
    bad = corrupt_solution(problem, 2, "calculation", random.Random(0))
    backend = ReplayBackend(tokenizer, [TEMPLATE.completion(bad.steps), TEMPLATE.completion(problem.steps[1:])])
    actor = Actor(backend, TEMPLATE)
    env = MathReasoningEnv(SyntheticArithmetic(size=1), OracleCritic(), max_refinements=1)
    obs, info = env.reset(options={"problem": problem})
    obs, _, _, _, info = env.step(actor.act(obs, info))
    assert info["refined"]
    obs, reward, terminated, _, info = env.step(actor.act(obs, info))
    assert terminated and reward == 1.0
    first, second = info["record"].generations
    assert not first.retokenized and not second.retokenized
    kept_step = first.completion_ids[: first.completion_ids.index(tokenizer.convert_tokens_to_ids("\n")) + 1]
    assert second.prompt_ids[-len(kept_step):] == kept_step  # step 1 exactly as it was sampled
    assert tokenizer.decode(second.prompt_ids) == TEMPLATE.prompt(problem.question, problem.steps[:1], obs_feedback(info))


def test_refinements_can_be_sampled_apart_from_first_attempts(tokenizer):
    problems = PROBLEMS[4:6]
    bad = {p.question: corrupt_solution(p, 2, "calculation", random.Random(0)).steps for p in problems}
    fixed = {p.question: p.steps[1:] for p in problems}  # step 1 is kept; the rest is the reference

    class Recording:
        """A wrong solution first, the fix once the prompt holds feedback; remembers how each call sampled."""

        name, seen = "recording", []

        def __init__(self):
            self.tokenizer = tokenizer

        def generate(self, prompts, sampling):
            self.seen.append((sampling.temperature, len(prompts)))
            out = []
            for prompt in prompts:
                text = TEMPLATE.decode(tokenizer.decode(list(prompt)))
                question = text.split("\n", 1)[0].removeprefix("Problem: ")
                solution = fixed[question] if "Feedback:" in text else bad[question]
                reply = TEMPLATE.completion(solution)
                ids = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                out.append([Completion(reply, ids, list(prompt))])
            return out

    backend = Recording()
    actor = Actor(backend, TEMPLATE, SamplingParams(max_new_tokens=64),
                  refine_sampling=SamplingParams(max_new_tokens=64, temperature=0.7, seed=0))
    records = rollout(problems, actor, OracleCritic(), EnvConfig(max_refinements=1), batch_size=8)
    assert all(r.correct and r.refinement_rounds == 1 for r in records)
    assert backend.seen == [(0.0, 2), (0.7, 2)]  # first attempts greedy, both refinements sampled in one call
    plain = Actor(backend, TEMPLATE, SamplingParams(max_new_tokens=64))
    assert plain.refine_sampling == plain.sampling


def obs_feedback(info):
    from envs.math_env import feedback_summary

    return feedback_summary(info["record"].attempts[0].critique)


def test_rollout_batches_generate_calls(random_backend):
    stats = RolloutStats()
    actor = Actor(random_backend, TEMPLATE, SamplingParams(max_new_tokens=8))
    rollout(list(PROBLEMS[:16]), actor, OracleCritic(), EnvConfig(max_refinements=0), batch_size=16, stats=stats)
    assert stats.episodes == 16 and stats.generate_calls == 1 and stats.completion_tokens > 0


def test_a_rollout_freezes_the_heap_only_while_it_runs(random_backend):
    """The collector skips the objects alive before a rollout while it runs (also a nested one, also an actor
    that fails), and everything is collectable again after."""
    import gc

    seen = []

    class Watching(Actor):
        def act_batch(self, observations, infos):
            seen.append(gc.get_freeze_count())
            if len(seen) == 1:  # a rollout inside a rollout leaves the outer one frozen
                rollout(list(PROBLEMS[:1]), Actor(random_backend, TEMPLATE, SamplingParams(max_new_tokens=2)),
                        OracleCritic(), EnvConfig(max_refinements=0))
                seen.append(gc.get_freeze_count())
            return super().act_batch(observations, infos)

    assert gc.get_freeze_count() == 0
    rollout(list(PROBLEMS[:4]), Watching(random_backend, TEMPLATE, SamplingParams(max_new_tokens=4)), OracleCritic(),
            EnvConfig(max_refinements=0), batch_size=4)
    assert seen[0] > 0 and seen[1] > 0 and gc.get_freeze_count() == 0

    class Failing(Actor):
        def act_batch(self, observations, infos):
            raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        rollout(list(PROBLEMS[:2]), Failing(random_backend, TEMPLATE), OracleCritic())
    assert gc.get_freeze_count() == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=40))
def test_split_lines_never_raises_on_any_ids(ids):
    tok = _TOK[0]
    ids = [i % len(tok) for i in ids]
    split_completion_lines(tok, ids, TEMPLATE)


_TOK = [build_tokenizer(["Step 1: 2*3=6\nAnswer: 6"], vocab_size=120)]
