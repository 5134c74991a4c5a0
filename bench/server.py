"""A server under test: how to start it, what to send it, what it must answer; and running it.

Each server is a uvicorn subprocess on 127.0.0.1, started in an empty working directory (so no
`.env` file is read) with only the AGENT_* and OTEL_* variables its `Server` entry sets, and
always stopped: terminate, then kill.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent

# Identical for every server, so only the application differs.
UVICORN_FLAGS = (
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
    "--backlog",
    "4096",
)

# Variables a server gets only from its `Server` entry, never from the shell running the
# benchmark: the app's settings, and tracing (no span may leave for a real backend).
OWN_PREFIXES = ("AGENT_", "OTEL_", "ARIZE_", "PHOENIX_")

START_TIMEOUT = 30.0
START_POLL = 0.05
STOP_TIMEOUT = 10.0
CHECK_TIMEOUT = 15.0
LOG_TAIL = 3000


class ServerError(RuntimeError):
    """A server did not start, or did not answer the expected JSON."""


def uvicorn_command(app_spec: str) -> tuple[str, ...]:
    """`python -m uvicorn <module:attribute>` with the shared flags; --host/--port come later."""
    return (sys.executable, "-m", "uvicorn", app_spec, *UVICORN_FLAGS)


@dataclass(frozen=True)
class Server:
    """One application to measure: add an entry to a list of these to compare a new variant."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    path: str
    headers: Mapping[str, str]
    body: bytes
    expected: Any


@dataclass
class RunningServer:
    server: Server
    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.server.path}"

    def memory_mib(self, field: str) -> float:
        """`VmHWM` (peak resident set) or `VmRSS` of the server process, in MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="ascii")
        for line in status.splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0]) / 1024  # the kernel reports kB
        raise ServerError(f"no {field} in /proc/{self.process.pid}/status")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far, all its threads included."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="ascii")
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": the comm may hold spaces
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")
        return text[-LOG_TAIL:].strip() or "(no output)"


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (all held open until every one is chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without AGENT_* or tracing settings, plus the server's own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(OWN_PREFIXES)}
    env["PYTHONPATH"] = str(ROOT)  # `bench.agents` and `bench.seed_app` import from any cwd
    env.update(extra)
    return env


@contextlib.contextmanager
def serving(
    server: Server,
    port: int,
    workdir: Path,
    check: Callable[[RunningServer], object] | None = None,
) -> Iterator[RunningServer]:
    """Start `server`, wait until it answers `expected`, yield it, and always stop it.

    `check` replaces the check of the answer, for a process that is not an agent endpoint.
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [*server.argv, "--host", HOST, "--port", str(port)],
            cwd=workdir,
            env=child_env(server.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        running = RunningServer(server, port, process, log)
        try:
            wait_until_listening(running)
            (check or check_answer)(running)
            yield running
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate (uvicorn shuts down gracefully), then kill if it is still there."""
    try:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def wait_until_listening(running: RunningServer) -> None:
    """Uvicorn binds after the app's startup, so an accepted connection means ready."""
    deadline = time.monotonic() + START_TIMEOUT
    for _ in range(int(START_TIMEOUT / START_POLL)):
        code = running.process.poll()
        if code is not None:
            raise ServerError(f"{running.name} exited with code {code}:\n{running.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, running.port), 1):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(START_POLL)
    raise ServerError(
        f"{running.name} did not listen on port {running.port} within {START_TIMEOUT:g} s:\n"
        f"{running.log_tail()}"
    )


def check_answer(running: RunningServer) -> None:
    """One request before any load: 200 and exactly the expected JSON."""
    server = running.server
    connection = http.client.HTTPConnection(HOST, running.port, timeout=CHECK_TIMEOUT)
    try:
        connection.request("POST", server.path, server.body, dict(server.headers))
        response = connection.getresponse()
        status, data = response.status, response.read()
    except OSError as exc:
        raise ServerError(f"{running.name}: check request failed: {exc}") from exc
    finally:
        connection.close()
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if status != 200 or answer != server.expected:
        raise ServerError(
            f"{running.name}: check request got HTTP {status} {data[:500]!r}, expected 200 "
            f"{json.dumps(server.expected)}\n{running.log_tail()}"
        )
