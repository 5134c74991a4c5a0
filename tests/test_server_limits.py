"""Slow and oversized clients against a real uvicorn with `LimitedHttpToolsProtocol`, raw sockets.

Each test would hang until its socket timeout (and fail) on plain uvicorn: no header limit, no
header or body time limit, no connection cap.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from app.context import AgentContext
from app.main import create_app
from app.server_limits import LimitedHttpToolsProtocol, ServerLimits, connection_cap
from tests.conftest import KEY, envelope, make_settings
from tests.live import START_TIMEOUT, free_port

WAIT = 20.0  # generous bounds: the suite runs on busy 2-core machines
LIMITS = ServerLimits(
    max_header_bytes=4096, max_headers=20, header_timeout=WAIT, max_connections=100
)


@contextmanager
def limited_server(app: ASGIApp, limits: ServerLimits = LIMITS) -> Iterator[uvicorn.Server]:
    """uvicorn on 127.0.0.1 with the protocol `agent-endpoint serve` uses."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        lifespan="on",
        http=partial(LimitedHttpToolsProtocol, limits=limits),  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start")
    assert server.started
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT)


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def connect(server: uvicorn.Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.config.port), timeout=WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks: list[bytes] = []
    for _ in range(1000):  # bounded: the answers are small
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    pytest.fail("the server kept sending")


def refusal(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"connection: close" in head.lower()
    return status, json.loads(body)["error"]


@pytest.fixture
def app() -> ASGIApp:
    return create_app(make_settings())


def test_an_unfinished_huge_header_is_refused_and_closed(app: ASGIApp) -> None:
    with limited_server(app) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8192)  # never ends
        status, error = refusal(read_to_end(sock))
    assert status == 431
    assert error["type"] == "headers_too_large"
    assert "AGENT_MAX_HEADER_BYTES=4096" in error["message"]


def test_a_huge_header_sent_in_pieces_is_refused(app: ASGIApp) -> None:
    with limited_server(app) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
        try:
            for _ in range(64):  # 64 KiB in 1 KiB pieces; the server stops reading at 4 KiB
                sock.sendall(b"a" * 1024)
        except OSError:
            pass  # the server answered and closed before the last piece
        try:
            answer = read_to_end(sock)
        except ConnectionResetError:
            return  # closed with our later pieces unread: the reset overtook the 431
    status, error = refusal(answer)
    assert (status, error["type"]) == (431, "headers_too_large")


def test_many_small_headers_past_the_byte_limit_are_refused(app: ASGIApp) -> None:
    headers = b"".join(b"X-%d: %s\r\n" % (n, b"v" * 400) for n in range(15))
    with limited_server(app) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
        status, error = refusal(read_to_end(sock))
    assert (status, error["type"]) == (431, "headers_too_large")


def test_too_many_headers_are_refused(app: ASGIApp) -> None:
    headers = b"".join(b"X-%d: v\r\n" % n for n in range(25))
    with limited_server(app) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
        status, error = refusal(read_to_end(sock))
    assert status == 431
    assert error["type"] == "too_many_headers"
    assert "AGENT_MAX_HEADERS=20" in error["message"]


def test_requests_within_the_limits_are_served_on_one_connection(app: ASGIApp) -> None:
    """Header bytes and counts start again with each request of a keep-alive connection."""
    headers = {f"X-{n}": "v" * 250 for n in range(12)}  # 3 KB of 4 KiB; 20 with httpx's 8
    with limited_server(app) as server:
        base = f"http://127.0.0.1:{server.config.port}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as client:
            statuses = [client.get("/healthz", headers=headers).status_code for _ in range(5)]
            ran = client.post("/invoke", json=envelope(), headers=headers)
    assert statuses == [200] * 5
    assert ran.status_code == 200, ran.text


def test_headers_that_do_not_arrive_in_time_get_408(app: ASGIApp) -> None:
    limits = replace(LIMITS, header_timeout=0.5)
    with limited_server(app, limits) as server, ExitStack() as stack:
        slow = stack.enter_context(connect(server))
        silent = stack.enter_context(connect(server))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        for sock in (slow, silent):
            status, error = refusal(read_to_end(sock))
            assert status == 408
            assert error["type"] == "header_timeout"
            assert "AGENT_HEADER_TIMEOUT_SECONDS=0.5" in error["message"]


def test_a_lying_content_length_gets_408_and_the_connection_closes() -> None:
    app = create_app(make_settings(body_timeout_seconds=0.5))
    head = (
        "POST /invoke HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n"
    )
    with limited_server(app) as server, connect(server) as sock:
        sock.sendall(head.encode() + b'{"input": ')  # and nothing more
        status, error = refusal(read_to_end(sock))
    assert status == 408
    assert error["type"] == "body_timeout"
    assert "AGENT_BODY_TIMEOUT_SECONDS=0.5" in error["message"]


def test_past_the_connection_cap_the_oldest_slow_client_makes_room(app: ASGIApp) -> None:
    """Half-sent requests fill the cap; /healthz still answers, the oldest one is closed."""
    limits = replace(LIMITS, max_connections=4)
    with limited_server(app, limits) as server, ExitStack() as stack:
        held = []
        for count in range(1, 5):
            sock = stack.enter_context(connect(server))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            held.append(sock)
            wait_for(lambda n=count: len(server.server_state.connections) == n, "the connection")
        health = httpx.get(f"http://127.0.0.1:{server.config.port}/healthz", timeout=WAIT)
        assert read_to_end(held[0]) == b""  # closed without an answer
        assert len(server.server_state.connections) <= 4
    assert health.status_code == 200


def test_past_the_cap_with_every_connection_busy_a_new_one_gets_503() -> None:
    started = threading.Semaphore(0)
    release = threading.Event()

    def agent(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        started.release()
        release.wait(WAIT)
        return "done"

    app = create_app(make_settings(), agent=agent)
    limits = replace(LIMITS, max_connections=2)
    with limited_server(app, limits) as server:
        url = f"http://127.0.0.1:{server.config.port}/invoke"
        statuses: list[int] = []

        def call() -> None:
            auth = {"Authorization": f"Bearer {KEY}"}
            response = httpx.post(url, json=envelope(), headers=auth, timeout=WAIT)
            statuses.append(response.status_code)

        callers = [threading.Thread(target=call) for _ in range(2)]
        try:
            for caller in callers:
                caller.start()
            for _ in callers:
                assert started.acquire(timeout=WAIT)
            with connect(server) as sock:
                status, error = refusal(read_to_end(sock))
        finally:
            release.set()
            for caller in callers:
                caller.join(WAIT)
    assert (status, error["type"]) == (503, "too_many_connections")
    assert statuses == [200, 200]


def test_the_cap_is_lowered_to_fit_the_fd_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource  # noqa: PLC0415

    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 4096))
    assert connection_cap(1000) == 192
    assert connection_cap(100) == 100


def test_an_unparsable_request_gets_a_json_400(app: ASGIApp) -> None:
    with limited_server(app) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n")
        status, error = refusal(read_to_end(sock))
    assert (status, error["type"]) == (400, "invalid_http")
