"""Start an OpenAI-compatible server for a local checkpoint on 127.0.0.1 (``transformers serve``).

Used by the backend-parity test and the benchmarks; for real deployments point ``OpenAIBackend`` at vLLM or
SGLang instead. The server gets no network: it loads the checkpoint from disk with the hub switched off.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

__all__ = ["LocalServer", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """``with LocalServer(path) as server: OpenAIBackend(server.base_url, model=server.model)``."""

    def __init__(self, model: str | os.PathLike, port: int | None = None, startup_timeout: float = 120.0,
                 log_file: str | os.PathLike | None = None):
        self.model = str(model)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.startup_timeout = startup_timeout
        self.log_file = Path(log_file) if log_file else None
        self._proc: subprocess.Popen | None = None

    def _command(self) -> list[str]:
        exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
        if exe is None:
            raise RuntimeError("the `transformers` CLI is not installed (pip install 'transformers[serving]')")
        return [exe, "serve", self.model, "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu",
                "--log-level", "warning", "--default-seed", "0"]

    def __enter__(self) -> LocalServer:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        out = open(self.log_file, "w") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(self._command(), env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self._proc.returncode} during start-up"
                                   + (f"; see {self.log_file}" if self.log_file else ""))
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise TimeoutError(f"transformers serve did not answer on {self.base_url} within {self.startup_timeout} s")

    def __exit__(self, *exc) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
