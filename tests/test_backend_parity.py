"""``actor.backend=openai`` against a real OpenAI-compatible server on 127.0.0.1 gives HFBackend's greedy results."""

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
            "eval.problems_per_level=3", "eval.with_critic=false", *extra]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((run_dir / "results" / "eval_actor.json").read_text())["metrics"]["accuracy"]


def test_openai_backend_matches_hf_backend(tmp_path):
    problems = SyntheticArithmetic(size=24, min_steps=1, max_steps=4, split="test", seed=5)[:]
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


def test_retries_with_backoff_on_overload():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            if len(calls) <= 2:
                self.send_response(429 if len(calls) == 1 else 503)
                self.end_headers()
                return
            payload = json.dumps({"choices": [{"text": "Step 1: 1+1=2\nAnswer: 2", "finish_reason": "stop"}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.server_port}/v1", model="m", backoff=0.01)
        out = backend.generate(["Problem: 1+1"], SamplingParams(max_new_tokens=20, stop=("\n",)))
    finally:
        server.shutdown()
    assert len(calls) == 3 and calls[-1]["prompt"] == "Problem: 1+1" and calls[-1]["max_tokens"] == 20
    assert out[0][0].text == "Step 1: 1+1=2\n"  # cut after the stop string


def test_openai_score_sums_the_echoed_log_probabilities_of_the_continuation():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls = []

    class Echo(BaseHTTPRequestHandler):  # echoes the prompt one character per token, each with log-prob -0.5
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            text = body["prompt"] + "X"  # and one generated token, which is not part of the score
            logprobs = {"tokens": list(text), "text_offset": list(range(len(text))),
                        "token_logprobs": [None] + [-0.5] * (len(text) - 1)}
            payload = json.dumps({"choices": [{"text": text, "logprobs": logprobs, "finish_reason": "length"}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(f"http://127.0.0.1:{server.server_port}/v1", model="m", backoff=0.01)
        scores = backend.score(["Problem: 1+1\nStep 1:", "Q"], [" 1+1=2 |", "ab"])
    finally:
        server.shutdown()
    assert scores == pytest.approx([-0.5 * 8, -1.0])
    assert all(c["echo"] is True for c in calls)  # requests go out concurrently, in any order
    assert sorted(c["prompt"] for c in calls) == ["Problem: 1+1\nStep 1: 1+1=2 |", "Qab"]
    with pytest.raises(BackendError, match="completions endpoint"):
        OpenAIBackend("http://127.0.0.1:9/v1", model="m", chat=True).score(["a"], ["b"])
