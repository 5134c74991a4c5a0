"""SIGTERM to a real `agent-endpoint serve`: the grace is what it says, and past it JSON 503."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AUTH
from tests.live import free_port
from tests.servers import start_server, wait_ready

WAIT = 20.0


@pytest.mark.parametrize("grace", ["0", "0.5", "1.5"])
def test_requests_running_past_the_grace_get_a_json_503(tmp_path: Path, grace: str) -> None:
    """0 and fractions are no wait and a short wait (they used to mean: wait forever)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    process = start_server(
        port, log, AGENT_ENTRYPOINT="tests.agents:slow", AGENT_SHUTDOWN_GRACE_SECONDS=grace
    )
    outcome: dict[str, Any] = {}
    try:
        wait_ready(url, process, log)

        def slow_request() -> None:
            body = {"input": {"seconds": 60}, "arize_metadata": {"run_id": "run_9"}}
            response = httpx.post(f"{url}/invoke", json=body, headers=AUTH, timeout=WAIT)
            outcome["status"], outcome["body"] = response.status_code, response.json()

        caller = threading.Thread(target=slow_request)
        caller.start()
        deadline = time.monotonic() + WAIT
        while httpx.get(f"{url}/readyz", timeout=WAIT).json()["in_flight"] == 0:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        code = process.wait(WAIT)  # the agent sleeps 60 s: only a bounded grace gets here
        caller.join(WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert outcome["status"] == 503, log.read_text()
    error = outcome["body"]["error"]
    assert error["type"] == "shutting_down"
    assert f"AGENT_SHUTDOWN_GRACE_SECONDS={float(grace):g}" in error["message"]
    output = log.read_text()
    assert "Traceback" not in output
    assert "Exception in ASGI application" not in output
