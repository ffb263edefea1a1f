
"""``actor.backend=openai`` against a real OpenAI-compatible server on 127.0.0.1 gives HFBackend's greedy results."""

import contextlib
import json
import subprocess
import sys

import pytest

from agents.actor import Actor
from agents.backends import SamplingParams
from agents.backends.hf import HFBackend
from agents.backends.local_server import LocalServer
from agents.backends.openai import BackendError, OpenAIBackend
from agents.prompts import PromptTemplate
from critics import NullCritic
from envs import EnvConfig, SyntheticArithmetic
from evaluation import accuracy_by_difficulty
from pipeline.checkpoints import SHIPPED_ACTOR
from rollout import rollout
from tests.conftest import ROOT


def _evaluate(backend, problems):
    actor = Actor(backend, PromptTemplate(number_format="reversed"), SamplingParams(max_new_tokens=160))
    return rollout(problems, actor, NullCritic(), EnvConfig(max_refinements=0), batch_size=16)


def _eval_command(run_dir, *extra):
    args = [sys.executable, str(ROOT / "train.py"), f"run_dir={run_dir}", "stages=[warmup,eval_actor]",
            "eval.problems_per_level=2", "eval.with_critic=false", *extra]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((run_dir / "results" / "eval_actor.json").read_text())["metrics"]["accuracy"]


def test_openai_backend_matches_hf_backend(tmp_path):
    problems = SyntheticArithmetic(size=16, min_steps=1, max_steps=4, split="test", seed=5)[:]
    hf = _evaluate(HFBackend(SHIPPED_ACTOR, threads=2), problems)
    hf_eval = _eval_command(tmp_path / "hf")
    with LocalServer(SHIPPED_ACTOR, log_file=tmp_path / "server.log") as server:
        served = _evaluate(OpenAIBackend(server.base_url, model=str(SHIPPED_ACTOR), concurrency=4), problems)
        with pytest.raises(BackendError, match="HTTP 4"):
            OpenAIBackend(server.base_url, model="no/such-model", max_retries=0).generate(
                ["Problem: x"], SamplingParams(max_new_tokens=2))
        # the same evaluation command, pointed at the server
        served_eval = _eval_command(tmp_path / "openai", "actor.backend=openai", f"actor.base_url={server.base_url}",
                                    f"actor.served_model={SHIPPED_ACTOR}")
    assert served_eval == hf_eval
    assert accuracy_by_difficulty(served) == accuracy_by_difficulty(hf)
    same = sum(a.final_answer == b.final_answer for a, b in zip(hf, served))
    assert same >= 0.95 * len(problems)
    assert 0 < accuracy_by_difficulty(hf)["overall"]["accuracy"]


def test_unreachable_server_is_a_clear_error():
    backend = OpenAIBackend("http://127.0.0.1:9/v1", model="m", max_retries=1, backoff=0.01, timeout=1)
    with pytest.raises(BackendError, match="gave up after 2 attempts"):
        backend.generate(["hi"], SamplingParams(max_new_tokens=2))


@contextlib.contextmanager
def fake_server(reply):
    """An OpenAI-compatible stand-in on 127.0.0.1: ``reply(body, calls)`` gives ``(status, payload or None)`` for
    each POST; yields the base URL and the list of request bodies."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            status, payload = reply(body, calls)
            self.send_response(status)
            if payload is None:
                self.end_headers()
                return
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(payload).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", calls
    finally:
        server.shutdown()


def test_retries_with_backoff_on_overload():
    def flaky(body, calls):
        if len(calls) <= 2:
            return (429 if len(calls) == 1 else 503), None
        return 200, {"choices": [{"text": "Step 1: 1+1=2\nAnswer: 2", "finish_reason": "stop"}]}

    with fake_server(flaky) as (url, calls):
        backend = OpenAIBackend(url, model="m", backoff=0.01)
        out = backend.generate(["Problem: 1+1"], SamplingParams(max_new_tokens=20, stop=("\n",)))
    assert len(calls) == 3 and calls[-1]["prompt"] == "Problem: 1+1" and calls[-1]["max_tokens"] == 20
    assert out[0][0].text == "Step 1: 1+1=2\n"  # cut after the stop string


def test_openai_score_sums_the_echoed_log_probabilities_of_the_continuation():
    def echo(body, calls):  # the prompt one character per token, each with log-prob -0.5
        text = body["prompt"] + "X"  # and one generated token, which is not part of the score
        logprobs = {"tokens": list(text), "text_offset": list(range(len(text))),
                    "token_logprobs": [None] + [-0.5] * (len(text) - 1)}
        return 200, {"choices": [{"text": text, "logprobs": logprobs, "finish_reason": "length"}]}

    with fake_server(echo) as (url, calls):
        backend = OpenAIBackend(url, model="m", backoff=0.01)
        scores = backend.score(["Problem: 1+1\nStep 1:", "Q"], [" 1+1=2 |", "ab"])
    assert scores == pytest.approx([-0.5 * 8, -1.0])
    assert all(c["echo"] is True for c in calls)  # requests go out concurrently, in any order
    assert sorted(c["prompt"] for c in calls) == ["Problem: 1+1\nStep 1: 1+1=2 |", "Qab"]
    with pytest.raises(BackendError, match="completions endpoint"):
        OpenAIBackend("http://127.0.0.1:9/v1", model="m", chat=True).score(["a"], ["b"])


def test_a_chat_only_api_serves_the_lm_annotator_with_its_key(tmp_path, monkeypatch, data_dir):
    """A hosted API (no local tokenizer): the annotator's request goes to /v1/chat/completions as a user message,
    with $OPENAI_API_KEY; what it answers in the paper's format becomes the critique."""
    from agents.backends import load_backend
    from autocritique.annotate import LMAnnotator
    from autocritique.flawed import FlawedResponse
    from envs.registry import ProblemsConfig, problems_for

    seen = []

    def chat(body, calls):
        seen.append(body)
        reply = ("Step sentence: x\nCorrectness of the step: Wrong\nExplanation: slip\n\n"
                 "Correctness of the final answer: Wrong\nExplanation: follows the slip")
        return 200, {"choices": [{"message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]}

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    [problem] = problems_for(ProblemsConfig(name="gsm8k"), "critique_data", 0, "train", size=1)
    with fake_server(chat) as (url, _):
        backend = load_backend("openai", "gpt-4o", base_url=url)
        [annotation] = LMAnnotator(backend).annotate([FlawedResponse(problem, tuple(problem.steps), "typed", 1)])
    assert backend.chat and backend.local_tokenizer is None
    assert backend._client.headers["Authorization"] == "Bearer sk-test"
    assert seen[0]["model"] == "gpt-4o" and seen[0]["messages"][0]["role"] == "user"
    assert "Gold answer:" in seen[0]["messages"][0]["content"]
    assert annotation.critique is not None and annotation.critique.first_error_step == 1
