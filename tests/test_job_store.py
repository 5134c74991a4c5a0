"""Both job stores keep, return, expire and claim jobs alike (Redis: a real redis-server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.job import FINISHED, Job, JobStatus, PushState, now
from app.job_runner import ResultPushes
from app.job_store import JobStore, MemoryJobStore
from app.redaction import Redactor
from app.redis_jobs import RedisJobStore
from app.result_push import ResultPusher, WebhookTarget
from tests.live import live_server
from tests.patience import scaled
from tests.redis_server import RedisServer

RETENTION = 1.0


def job(job_id: str, status: JobStatus = JobStatus.QUEUED) -> Job:
    ended = now() - timedelta(seconds=5) if status is JobStatus.SUCCEEDED else None
    return Job(
        job_id=job_id,
        run_id="run",
        status=status,
        submitted_at=now(),
        finished_at=ended,
        push=PushState(target="none", status="off"),
        input={"goal": "x"},
    )


def store_of(request: pytest.FixtureRequest, retention: float, push_seconds: float) -> JobStore:
    if request.param == "memory":
        return MemoryJobStore(retention, push_seconds=push_seconds)
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisJobStore(
        server.url,
        namespace="test",
        retention_seconds=retention,
        timeout_seconds=60,
        push_seconds=push_seconds,
    )


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    chosen = store_of(request, RETENTION, push_seconds=0.2)
    yield chosen
    await chosen.close()


@pytest.fixture(params=["memory", "redis"])
async def lasting_store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    """Jobs kept for a minute, push claims held for one: longer than any test here."""
    chosen = store_of(request, 60, push_seconds=60)
    yield chosen
    await chosen.close()


@pytest.mark.anyio
async def test_a_job_is_kept_returned_and_discarded(store: JobStore) -> None:
    await store.save(job("a"))
    found = await store.get("a")
    assert found is not None
    assert found.model_dump() == job("a").model_dump() | {"submitted_at": found.submitted_at}
    await store.discard("a")
    assert await store.get("a") is None
    assert await store.get("never") is None


@pytest.mark.anyio
async def test_finished_jobs_are_forgotten_after_the_retention(store: JobStore) -> None:
    await store.save(job("done", JobStatus.SUCCEEDED))
    await store.save(job("waiting"))
    await asyncio.sleep(RETENTION + 0.2)
    await store.save(job("later"))  # the memory store forgets on its next save
    assert await store.get("done") is None
    assert await store.get("waiting") is not None  # unfinished: kept for its time limit


@pytest.mark.anyio
async def test_the_first_push_claim_wins_until_it_lapses(store: JobStore) -> None:
    assert await store.claim_push("a", "run-1")
    assert await store.claim_push("a", "run-1")  # its own claim again: a retried call
    assert not await store.claim_push("a", "run-2")
    assert await store.claim_push("b", "run-2")
    await asyncio.sleep(1.1)  # Redis counts expiry in whole seconds (at least 1)
    assert await store.claim_push("a", "run-2")  # the claimer died: another run may push


@pytest.mark.anyio
async def test_one_run_holds_a_job_until_its_lease_lapses(store: JobStore) -> None:
    assert await store.hold("a", "run-1", 0.3)
    assert await store.held("a")
    assert not await store.hold("a", "run-2", 0.3)
    assert await store.renew("a", "run-1", 0.3)
    assert not await store.renew("a", "run-2", 0.3)
    assert await store.running_jobs() == ["a"]
    deadline = asyncio.get_running_loop().time() + scaled(5)
    while await store.held("a"):  # run-1 stops renewing: its lease lapses
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert await store.hold("a", "run-2", 30)  # taken over
    await store.release("a", "run-1", done=True)  # a stale run's release changes nothing
    assert await store.held("a")
    assert await store.running_jobs() == ["a"]
    await store.release("a", "run-2", done=False)  # cut short: listed still, for the sweep
    assert not await store.held("a")
    assert await store.running_jobs() == ["a"]
    assert await store.unlist("a")
    assert not await store.unlist("a")  # one sweeper wins
    await store.relist("a")
    assert await store.hold("a", "run-3", 30)
    await store.release("a", "run-3", done=True)
    assert await store.running_jobs() == []


def cancel(stored: Job) -> Job | None:
    if stored.status in FINISHED:
        return None
    stored.status = JobStatus.CANCELLED
    return stored


def succeed(stored: Job) -> Job | None:
    if stored.status in FINISHED:
        return None
    stored.status, stored.result = JobStatus.SUCCEEDED, "late result"
    return stored


@pytest.mark.anyio
async def test_an_update_changes_an_unfinished_job_only(store: JobStore) -> None:
    await store.save(job("a"))
    assert not await store.cancel_requested("a")
    cancelled = await store.update("a", cancel)
    late = await store.update("a", succeed)  # the agent's result, after the cancellation
    stored = await store.get("a")
    assert cancelled.changed
    assert cancelled.job is not None
    assert cancelled.job.status is JobStatus.CANCELLED
    assert not late.changed
    assert late.job is not None
    assert late.job.status is JobStatus.CANCELLED
    assert stored is not None
    assert stored.status is JobStatus.CANCELLED
    assert stored.result is None
    assert await store.cancel_requested("a")
    assert await store.update("never", cancel) == (None, False)


@pytest.mark.anyio
async def test_concurrent_updates_are_all_applied(store: JobStore) -> None:
    """Twenty read-change-writes at once on one job: none is lost (Redis retries on WATCH)."""
    await store.save(job("a"))

    def one_more(stored: Job) -> Job:
        stored.attempts += 1
        return stored

    results = await asyncio.gather(*(store.update("a", one_more) for _ in range(20)))
    stored = await store.get("a")
    assert all(result.changed for result in results)
    assert stored is not None
    assert stored.attempts == 20


@pytest.mark.anyio
async def test_two_runs_of_one_finished_job_push_it_once(lasting_store: JobStore) -> None:
    """Two runs (two workers, or a redelivery beside the first run) reach the push of the
    same job: the first push is still in flight when the second run gets there. Without the
    push claim both would send it."""
    received: list[bytes] = []
    release = threading.Event()

    async def hook(request: Request) -> Response:
        received.append(await request.body())
        if len(received) == 1:  # the first push stays in flight until released
            await asyncio.to_thread(release.wait, 30)
        return JSONResponse({"ok": True})

    finished = job("a", JobStatus.SUCCEEDED)
    finished.finished_at = now()
    finished.push = PushState(target="webhook", status="pending")
    await lasting_store.save(finished)
    with live_server(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        pushers = [
            ResultPusher(
                WebhookTarget(f"{url}/hook", None),
                attempts=1,
                backoff_seconds=0.01,
                timeout_seconds=30,
                redact=Redactor([]),
            )
            for _ in range(2)
        ]
        try:
            first = asyncio.create_task(
                ResultPushes(lasting_store, pushers[0]).push(finished.model_copy())
            )
            deadline = asyncio.get_running_loop().time() + scaled(10)
            while not received:
                assert asyncio.get_running_loop().time() < deadline, "the first push never came"
                await asyncio.sleep(0.01)
            second = asyncio.create_task(
                ResultPushes(lasting_store, pushers[1]).push(finished.model_copy())
            )
            release.set()
            await asyncio.wait_for(asyncio.gather(first, second), scaled(30))
        finally:
            release.set()
            for pusher in pushers:
                await pusher.close()
    stored = await lasting_store.get("a")
    assert len(received) == 1
    assert stored is not None
    assert stored.push.status == "pushed"
