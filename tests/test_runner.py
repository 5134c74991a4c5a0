"""Running the agent: sync and async agents, time limit, concurrency cap, errors, output."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from app.context import AgentContext
from tests.conftest import AUTH, KEY, AppFactory, client_for, envelope

pytestmark = pytest.mark.anyio


async def test_sync_agent_runs_in_the_pool_with_its_context(build_app: AppFactory) -> None:
    seen: dict[str, Any] = {}

    def agent(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
        seen["thread"] = threading.current_thread().name
        return {"goal": input["goal"], "config": ctx.config, "run_id": ctx.run_id}

    body = envelope(config={"model": "m", "max_turns": 3})
    async with client_for(build_app(agent=agent)) as client:
        response = await client.post("/invoke", json=body, headers=AUTH)
    assert response.json() == {
        "goal": body["input"]["goal"],
        "config": {"model": "m", "max_turns": 3},
        "run_id": "run_1",
    }
    assert seen["thread"].startswith("agent")


async def test_async_agent_runs_on_the_loop(build_app: AppFactory) -> None:
    async def agent(input: dict[str, Any], ctx: AgentContext) -> list[Any]:  # noqa: A002
        await asyncio.sleep(0)
        return [threading.current_thread() is threading.main_thread(), ctx.time_left() > 0]

    async with client_for(build_app(agent=agent)) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.json() == [True, True]


async def test_callable_object_with_async_call_is_awaited(build_app: AppFactory) -> None:
    class Agent:
        async def __call__(self, input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
            return "from __call__"

    async with client_for(build_app(agent=Agent())) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.json() == "from __call__"


async def test_pydantic_output_is_serialized(build_app: AppFactory) -> None:
    class Answer(BaseModel):
        text: str
        score: float

    async def agent(input: dict[str, Any], ctx: AgentContext) -> Answer:  # noqa: A002
        return Answer(text="hi", score=0.5)

    async with client_for(build_app(agent=agent)) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.json() == {"text": "hi", "score": 0.5}


@pytest.mark.parametrize("bad", [{1, 2}, float("nan"), object()], ids=["set", "nan", "object"])
async def test_non_json_output_is_a_clear_500(build_app: AppFactory, bad: object) -> None:
    async def agent(input: dict[str, Any], ctx: AgentContext) -> object:  # noqa: A002
        return {"value": bad}

    async with client_for(build_app(agent=agent)) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "invalid_agent_output"
    assert error["run_id"] == "run_1"


async def test_agent_exception_is_a_500_without_traceback(build_app: AppFactory) -> None:
    def agent(input: dict[str, Any], ctx: AgentContext) -> None:  # noqa: A002
        raise ValueError("no flights on that date")

    async with client_for(build_app(agent=agent)) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
        after = await client.get("/readyz")
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "type": "agent_error",
            "message": "the agent raised ValueError: no flights on that date",
            "run_id": "run_1",
        }
    }
    assert "Traceback" not in response.text
    assert after.json()["in_flight"] == 0


async def test_agent_timeout_is_504_and_cancels_the_task(build_app: AppFactory) -> None:
    cancelled = asyncio.Event()

    async def agent(input: dict[str, Any], ctx: AgentContext) -> None:  # noqa: A002
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with client_for(build_app(agent=agent, timeout_seconds=0.2)) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
        ready = await client.get("/readyz")
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["type"] == "agent_timeout"
    assert "AGENT_TIMEOUT_SECONDS=0.2" in error["message"]
    assert error["run_id"] == "run_1"
    assert cancelled.is_set()
    assert ready.json()["in_flight"] == 0


async def test_agents_own_timeout_error_is_an_agent_error(build_app: AppFactory) -> None:
    async def agent(input: dict[str, Any], ctx: AgentContext) -> None:  # noqa: A002
        raise TimeoutError("the LLM API timed out")

    async with client_for(build_app(agent=agent, timeout_seconds=5)) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.status_code == 500
    assert "the LLM API timed out" in response.json()["error"]["message"]


async def test_sync_timeout_signals_the_thread_and_holds_its_slot(build_app: AppFactory) -> None:
    """A thread cannot be killed: it is told through ctx.cancelled and keeps its slot until done."""
    release = threading.Event()
    observed = threading.Event()

    def agent(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        if ctx.cancelled.wait(timeout=10):
            observed.set()
        release.wait(timeout=10)
        return "late"

    app = build_app(agent=agent, timeout_seconds=0.2, max_concurrency=1)
    async with client_for(app) as client:
        timed_out = await client.post("/invoke", json=envelope(), headers=AUTH)
        assert await asyncio.to_thread(observed.wait, 5)
        while_thread_runs = await client.post("/invoke", json=envelope(), headers=AUTH)
        release.set()
        for _ in range(500):
            if (await client.get("/readyz")).json()["in_flight"] == 0:
                break
            await asyncio.sleep(0.01)
        after = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert timed_out.status_code == 504
    assert while_thread_runs.status_code == 429
    assert after.status_code == 504  # a free slot again (this run times out the same way)


async def test_concurrency_cap_answers_429_with_retry_after(build_app: AppFactory) -> None:
    gate = asyncio.Event()
    all_started = asyncio.Event()
    started = 0

    async def agent(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        nonlocal started
        started += 1
        if started == 3:
            all_started.set()
        await gate.wait()
        return "done"

    async with client_for(build_app(agent=agent, max_concurrency=3)) as client:
        first = [
            asyncio.create_task(client.post("/invoke", json=envelope(), headers=AUTH))
            for _ in range(3)
        ]
        await all_started.wait()
        refused = await client.post("/invoke", json=envelope(), headers=AUTH)
        gate.set()
        done = await asyncio.gather(*first)
        again = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert "AGENT_MAX_CONCURRENCY" in refused.json()["error"]["message"]
    assert [r.status_code for r in done] == [200, 200, 200]
    assert again.status_code == 200


async def test_queue_wait_lets_a_request_wait_for_a_slot(build_app: AppFactory) -> None:
    async def agent(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        await asyncio.sleep(0.1)
        return "done"

    app = build_app(agent=agent, max_concurrency=1, queue_wait_seconds=5)
    async with client_for(app) as client:
        responses = await asyncio.gather(
            *(client.post("/invoke", json=envelope(), headers=AUTH) for _ in range(4))
        )
    assert [r.status_code for r in responses] == [200] * 4


async def test_queue_wait_gives_up_with_429(build_app: AppFactory) -> None:
    async def agent(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        await asyncio.sleep(1)
        return "done"

    app = build_app(agent=agent, max_concurrency=1, queue_wait_seconds=0.05)
    async with client_for(app) as client:
        responses = await asyncio.gather(
            *(client.post("/invoke", json=envelope(), headers=AUTH) for _ in range(2))
        )
    assert sorted(r.status_code for r in responses) == [200, 429]


async def test_parallel_sync_rows_use_more_than_the_stock_40_threads(
    build_app: AppFactory,
) -> None:
    """60 blocking rows at once all run together when AGENT_SYNC_THREADS allows it."""
    barrier = threading.Barrier(60, timeout=10)

    def agent(input: dict[str, Any], ctx: AgentContext) -> int:  # noqa: A002
        return barrier.wait()

    app = build_app(agent=agent, sync_threads=60, max_concurrency=60)
    async with client_for(app) as client:
        responses = await asyncio.gather(
            *(client.post("/invoke", json=envelope(), headers=AUTH) for _ in range(60))
        )
    assert sorted(r.json() for r in responses) == list(range(60))


def test_blocking_agent_does_not_block_health(build_app: AppFactory) -> None:
    """While a sync agent blocks its thread, the event loop keeps answering."""

    def agent(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        time.sleep(0.5)
        return "slow"

    async def scenario() -> tuple[int, int]:
        async with client_for(build_app(agent=agent)) as client:
            slow = asyncio.create_task(
                client.post("/invoke", json=envelope(), headers={"X-API-Key": KEY})
            )
            await asyncio.sleep(0.05)
            health = await client.get("/healthz")
            assert not slow.done()
            return health.status_code, (await slow).status_code

    assert asyncio.run(scenario()) == (200, 200)


async def test_draining_runner_refuses_new_runs(build_app: AppFactory) -> None:
    app = build_app()
    async with client_for(app) as client:
        await app.state.runner.drain(grace_seconds=0)
        refused = await client.post("/invoke", json=envelope(), headers=AUTH)
        ready = await client.get("/readyz")
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "shutting_down"
    assert ready.status_code == 503
