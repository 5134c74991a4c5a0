"""Behaviour that needs real sockets: a live uvicorn on 127.0.0.1.

A caller that disconnects cancels its agent run; SIGTERM lets in-flight requests finish.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.context import AgentContext
from app.main import create_app
from tests.conftest import AUTH, KEY, envelope, make_settings
from tests.live import free_port, live_server
from tests.servers import start_server, wait_ready

WAIT = 10.0


def raw_request(body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        "POST /invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def hang_up_once_started(url: str, started: threading.Event) -> None:
    """Send a whole request over a raw socket, then close it as soon as the agent runs."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(raw_request(envelope()))
        assert started.wait(WAIT)


def test_disconnect_cancels_an_async_run() -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def agent(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        import asyncio  # noqa: PLC0415

        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    with live_server(create_app(make_settings(), agent=agent)) as url:
        hang_up_once_started(url, started)
        assert cancelled.wait(WAIT)
        # The slot is free again and the server keeps serving.
        ready = httpx.get(f"{url}/readyz").json()
        ok = httpx.get(f"{url}/healthz")
    assert ready["in_flight"] == 0
    assert ok.status_code == 200


def test_disconnect_signals_a_sync_run() -> None:
    started = threading.Event()
    saw_cancel = threading.Event()

    def agent(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        started.set()
        if ctx.cancelled.wait(WAIT):
            saw_cancel.set()
        return "stopped"

    with live_server(create_app(make_settings(), agent=agent)) as url:
        hang_up_once_started(url, started)
        assert saw_cancel.wait(WAIT)


def test_many_parallel_rows_over_real_http() -> None:
    """Arize sends rows in parallel: 50 at once over real connections all succeed."""
    app = create_app(make_settings(max_concurrency=64))
    with live_server(app) as url:
        results: list[int] = []
        lock = threading.Lock()

        def one(index: int) -> None:
            body = envelope(f"Plan a {index % 5 + 1}-day trip to Paris")
            status = httpx.post(f"{url}/invoke", json=body, headers=AUTH, timeout=WAIT).status_code
            with lock:
                results.append(status)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
    assert results == [200] * 50


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    process = start_server(port, log, AGENT_ENTRYPOINT="tests.agents:slow")
    try:
        wait_ready(url, process, log)
        outcome: dict[str, Any] = {}

        def slow_request() -> None:
            body = {"input": {"seconds": 1.5}}
            response = httpx.post(f"{url}/invoke", json=body, headers=AUTH, timeout=WAIT)
            outcome["status"], outcome["body"] = response.status_code, response.json()

        caller = threading.Thread(target=slow_request)
        caller.start()
        time.sleep(0.5)  # the request is in flight
        process.send_signal(signal.SIGTERM)
        caller.join(WAIT)
        code = process.wait(WAIT)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert outcome == {"status": 200, "body": {"slept": 1.5}}, log.read_text()
    # uvicorn re-raises SIGTERM after a clean shutdown, so a supervisor sees the signal.
    assert code in (0, -signal.SIGTERM)
    output = log.read_text()
    assert "Waiting for connections to close" in output
    assert "Application shutdown complete" in output
