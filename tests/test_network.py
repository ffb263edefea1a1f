"""Reading strace logs for connections that leave the machine: the default run is traced with it
(tests/test_default_run.py) and may connect only to loopback, this machine's own addresses, or local sockets."""

import re
import shutil
import socket
import subprocess

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
