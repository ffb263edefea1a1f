"""Nothing the project runs connects beyond this machine: a short run of the stages that start wandb and Ray,
traced with strace, connects only to loopback, this machine's own addresses, or local sockets."""

import os
import re
import shutil
import socket
import subprocess
import sys

from tests.conftest import ROOT

STRACE = shutil.which("strace")
_CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_INET6?|AF_UNIX|AF_NETLINK|AF_UNSPEC)(?P<rest>[^}]*)\}")
_ADDR = re.compile(r'inet_(?:addr|pton)\((?:AF_INET6?, )?"(?P<ip>[^"]+)"')
_PORT = re.compile(r"sin6?_port=htons\((?P<port>\d+)\)")


def _own_addresses() -> set[str]:
    own = {"127.0.0.1", "::1", "0.0.0.0", "::"}
    try:
        own |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass
    for line in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split():
        own.add(line)
    return own


def outward_connections(trace: str, own: set[str]) -> list[str]:
    """The connect() calls in an strace log that leave the machine (DNS look-ups included)."""
    bad = []
    for line in trace.splitlines():
        m = _CONNECT.search(line)
        if not m or m.group(1) in ("AF_UNIX", "AF_NETLINK", "AF_UNSPEC"):
            continue
        ip = _ADDR.search(m.group("rest"))
        port = _PORT.search(m.group("rest"))
        address = ip.group("ip") if ip else "?"
        if address.startswith("::ffff:"):
            address = address.removeprefix("::ffff:")
        if address not in own and not address.startswith("127.") or (port and port.group("port") == "53"):
            bad.append(line.strip())
    return bad


def test_the_trace_reader_sees_an_outward_connection():
    own = {"127.0.0.1"}
    trace = ('123 connect(5, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("8.8.8.8")}, 16) = 0\n'
             '124 connect(6, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
             '125 connect(7, {sa_family=AF_UNIX, sun_path="/tmp/ray/x.sock"}, 110) = 0\n')
    assert outward_connections(trace, own) == [trace.splitlines()[0]]


def test_a_default_style_run_connects_only_to_this_machine(tmp_path):
    assert STRACE, "this test traces the run with strace: install it (apt-get install strace; .ci/run does)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_", "HF_"))}  # a fresh machine
    log = tmp_path / "connect.log"
    # seccomp-bpf: only connect() stops the traced processes (plain ptrace stops them at every system call)
    cmd = [STRACE, "--seccomp-bpf", "-f", "-qq", "-e", "trace=connect", "-o", str(log), sys.executable,
           str(ROOT / "train.py"),
           f"run_dir={tmp_path / 'run'}", "stages=[warmup,eval_test_time,self_improve]", "tracking.mode=offline",
           "test_time.critics=[none,oracle]", "test_time.levels=[2]", "test_time.hard_levels=[2]",
           "test_time.problems_per_level=1", "test_time.k_max=1", "test_time.ks=[1]", "test_time.budget_k_max=1",
           "test_time.max_rounds=1", "self_improve.algorithms=[rft]", "self_improve.iterations=1",
           "self_improve.problems_per_iteration=2", "self_improve.samples_per_problem=1", "self_improve.sft_steps=1",
           "self_improve.batch_size=2", "self_improve.eval_problems_per_level=1", "ray.num_workers=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*")), "the offline W&B run was not written"
    assert outward_connections(log.read_text(), _own_addresses()) == []
