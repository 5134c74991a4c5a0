"""The service as a child process: `agent-endpoint serve` on 127.0.0.1, its output in a file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import KEY
from tests.live import free_port
from tests.patience import scaled
from tests.processes import ROOT, clean_env

STOP_WAIT = 20.0


def start_server(port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=clean_env(
                **{
                    "AGENT_API_KEYS": KEY,
                    "AGENT_INPUT_SCHEMA_FILE": str(ROOT / "tests" / "open_schema.json"),
                    **env,
                }
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + scaled(20)
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("server did not become ready")


@contextmanager
def served(log: Path, **env: str) -> Iterator[str]:
    """A ready server's URL; on exit SIGTERM, as a platform stops it, and wait for the exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(port, log, **env)
    try:
        wait_ready(url, process, log)
        yield url
        process.send_signal(signal.SIGTERM)
        process.wait(scaled(STOP_WAIT))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
