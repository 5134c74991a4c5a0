"""The time limit holds whatever the agent does, and /readyz says when no slot is free."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from app.main import create_app
from tests.conftest import AUTH, client_for, envelope, make_settings

pytestmark = pytest.mark.anyio

WAIT = 30.0  # generous: only a broken limit gets anywhere near it


async def test_an_agent_that_swallows_its_cancellation_still_gets_its_504_at_the_limit() -> None:
    release = asyncio.Event()
    finished = asyncio.Event()

    async def stubborn(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # swallowed: the limit must hold anyway
        finished.set()
        return {"late": True}

    app = create_app(make_settings(timeout_seconds=0.2), agent=stubborn)
    async with client_for(app) as client:
        # The agent runs until released, and it is released only after the answer: the answer
        # cannot have waited for it.
        response = await asyncio.wait_for(
            client.post("/invoke", json=envelope(), headers=AUTH), WAIT
        )
        assert response.status_code == 504
        assert response.json()["error"]["type"] == "agent_timeout"
        ready = (await client.get("/readyz")).json()
        assert ready["overdue"] == 1  # it still runs, and still holds its slot
        assert ready["in_flight"] == 1
        release.set()
        await asyncio.wait_for(finished.wait(), WAIT)
        deadline = time.monotonic() + WAIT
        while (ready := (await client.get("/readyz")).json())["in_flight"]:
            assert time.monotonic() < deadline, ready
            await asyncio.sleep(0.01)
        assert ready["overdue"] == 0


async def test_a_stuck_sync_agent_keeps_its_slot_and_readyz_reports_busy() -> None:
    release = threading.Event()

    def stuck(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
        release.wait(WAIT)  # ignores ctx.cancelled, as a blocking call would
        return {}

    app = create_app(make_settings(timeout_seconds=0.2, max_concurrency=1), agent=stuck)
    async with client_for(app) as client:
        try:
            timed_out = await client.post("/invoke", json=envelope(), headers=AUTH)
            assert timed_out.status_code == 504
            busy = await client.get("/readyz")
            assert busy.status_code == 503
            assert busy.json() == {
                "status": "busy",
                "agent": busy.json()["agent"],
                "in_flight": 1,
                "overdue": 1,
            }
            refused = await client.post("/invoke", json=envelope(), headers=AUTH)
            assert refused.status_code == 429
        finally:
            release.set()
        deadline = time.monotonic() + WAIT
        while (ready := await client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            await asyncio.sleep(0.01)
        assert ready.json()["status"] == "ready"
        assert ready.json()["overdue"] == 0
