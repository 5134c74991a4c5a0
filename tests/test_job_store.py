"""Both job stores keep, return, expire and claim jobs alike (Redis: a real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from app.job import Job, JobStatus, PushState, now
from app.job_store import JobStore, MemoryJobStore
from app.redis_jobs import RedisJobStore
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


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    chosen: JobStore
    if request.param == "memory":
        chosen = MemoryJobStore(RETENTION, push_seconds=0.2)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        chosen = RedisJobStore(
            server.url,
            namespace="test",
            retention_seconds=RETENTION,
            timeout_seconds=60,
            push_seconds=0.2,
        )
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
    assert await store.claim_push("a")
    assert not await store.claim_push("a")
    assert await store.claim_push("b")
    await asyncio.sleep(1.1)  # Redis counts expiry in whole seconds (at least 1)
    assert await store.claim_push("a")  # the claimer died: another run may push
