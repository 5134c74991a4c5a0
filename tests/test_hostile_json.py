"""JSON that is not interoperable (RFC 8259) gets a 400 naming the problem, on both routes,
before any job exists; the server keeps serving."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from app.input_schema import InputSchema
from app.main import create_app
from app.offload import OFFLOAD_BYTES
from tests.conftest import AUTH, client_for, make_settings
from tests.processes import ROOT

pytestmark = pytest.mark.anyio

HEADERS = {**AUTH, "Content-Type": "application/json"}
PREFIX = b'{"goal": "x", "value": '

BODIES = [
    pytest.param(PREFIX + b'"\\ud800"}', "lone UTF-16 surrogate", id="lone high surrogate"),
    pytest.param(PREFIX + b'"a\\uDC00b"}', "lone UTF-16 surrogate", id="lone low surrogate"),
    pytest.param(PREFIX + b"NaN}", "NaN is not a JSON value", id="NaN"),
    pytest.param(PREFIX + b"Infinity}", "Infinity is not a JSON value", id="Infinity"),
    pytest.param(PREFIX + b"-Infinity}", "-Infinity is not a JSON value", id="-Infinity"),
    pytest.param(PREFIX + b"1e400}", "1e400 is beyond a double's range", id="1e400"),
    pytest.param(PREFIX + b"1" * 4301 + b"}", "more than 4,300 digits", id="huge integer"),
    pytest.param(PREFIX + b"[" * 65 + b"]" * 65 + b"}", "more than 64 levels deep", id="65 levels"),
    pytest.param(
        PREFIX + b"[" * 20_000 + b"]" * 20_000 + b"}", "too deeply to read", id="20,000 levels"
    ),
]


@pytest.mark.parametrize(("body", "problem"), BODIES)
async def test_not_interoperable_json_is_a_400_on_both_routes(body: bytes, problem: str) -> None:
    calls: list[dict[str, Any]] = []

    async def counting(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
        calls.append(input)
        return {"ok": True}

    settings = make_settings(
        input_schema_file=ROOT / "tests" / "open_schema.json", presets_file=None, job_concurrency=1
    )
    async with client_for(create_app(settings, agent=counting)) as client:
        for route in ("/invoke", "/invoke/async"):
            response = await client.post(route, content=body, headers=HEADERS)
            assert response.status_code == 400, (route, response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_json"
            assert problem in error["message"]
        # The server keeps serving, and no job was queued: the queue is first in, first out
        # with one consumer, so a queued bad job would run before this one.
        good = await client.post("/invoke/async", json={"goal": "fine"}, headers=AUTH)
        assert good.is_success, good.text
        deadline = time.monotonic() + 30
        while (await client.get(good.json()["status_url"], headers=AUTH)).json()[
            "status"
        ] != "succeeded":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    assert calls == [{"goal": "fine"}]


async def test_interoperable_edges_still_pass() -> None:
    """Paired surrogates, 64 levels, big but finite numbers and 4,300 digits are fine."""

    async def echo(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
        return input

    settings = make_settings(
        input_schema_file=ROOT / "tests" / "open_schema.json", presets_file=None
    )
    body = (
        b'{"emoji": "\\ud83d\\ude00", "deep": '
        + b"[" * 63
        + b"]" * 63
        + b', "big": 1e308, "long": '
        + b"9" * 4300
        + b"}"
    )
    async with client_for(create_app(settings, agent=echo)) as client:
        response = await client.post("/invoke", content=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["emoji"] == "\U0001f600"
    assert answer["big"] == 1e308
    assert answer["long"] == int("9" * 4300)


class ThreadRecordingSchema(InputSchema):
    """The open schema, noting which thread validates: the event loop's, or a worker's."""

    def __init__(self) -> None:
        super().__init__({"type": "object"}, {})
        self.threads: list[str] = []

    def accepts(self, payload: dict[str, Any]) -> bool:
        self.threads.append(threading.current_thread().name)
        return super().accepts(payload)


async def test_large_bodies_are_read_and_checked_off_the_event_loop() -> None:
    """bench/hostile.py measures the stall this avoids: a megabyte of hostile JSON scanned on
    the loop held /healthz for 150 ms. Small bodies stay on the loop (a hand-off costs more)."""
    schema = ThreadRecordingSchema()
    app = create_app(make_settings(), agent=lambda i, c: {}, input_schema=schema)
    loop_thread = threading.current_thread().name
    async with client_for(app) as client:
        small = await client.post("/invoke", json={"goal": "x"}, headers=AUTH)
        on_loop = list(schema.threads)
        schema.threads.clear()
        large = await client.post(
            "/invoke", json={"goal": "{{a}} " * (OFFLOAD_BYTES // 4)}, headers=AUTH
        )
    assert (small.status_code, large.status_code) == (200, 200)
    assert on_loop
    assert set(on_loop) == {loop_thread}
    assert schema.threads
    assert loop_thread not in schema.threads
