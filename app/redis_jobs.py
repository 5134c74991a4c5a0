"""The Redis mode (`AGENT_JOBS=redis`): jobs stored in Redis and queued for the workers.

Only imported in that mode (`app.jobs.build_jobs`, `app/worker.py`). Redis failures leave
here as `JobStoreUnavailableError`, which the routes answer with 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio
from redis.exceptions import RedisError

from app.entrypoint import Agent
from app.job import FINISHED, Job
from app.job_broker import NAMESPACE, build_broker, job_actor
from app.job_store import JobStoreUnavailableError
from app.jobs import Jobs
from app.settings import Settings


@contextmanager
def unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise JobStoreUnavailableError(type(exc).__name__) from exc


MAX_CONNECTIONS = 64
CONNECTION_WAIT_SECONDS = 10


class RedisJobStore:
    """Jobs under `<namespace>:job:<id>`; push claims under `<namespace>:push:<id>`.

    An unfinished job expires too, after its time limit plus the retention, so a job whose
    every run was lost does not stay in Redis for ever. A push claim lapses after the longest
    a push can take, so a run that died while pushing does not block the push for good.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        retention_seconds: float,
        timeout_seconds: float,
        push_seconds: float,
    ) -> None:
        # A blocking pool: a burst of submissions waits for a free connection instead of
        # failing past the pool's size (redis-py's default pool raises at 100).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT_SECONDS
        )
        self._redis = redis.asyncio.Redis.from_pool(pool)  # closes the pool with it
        self._prefix = namespace
        self._retention = max(1, int(retention_seconds))
        self._unfinished = max(1, int(timeout_seconds + retention_seconds))
        self._claim = max(1, int(push_seconds))  # the longest a push can take

    def _key(self, kind: str, job_id: str) -> str:
        return f"{self._prefix}:{kind}:{job_id}"

    async def save(self, job: Job) -> None:
        ttl = self._retention if job.status in FINISHED else self._unfinished
        with unavailable_on_error():
            await self._redis.set(self._key("job", job.job_id), job.model_dump_json(), ex=ttl)

    async def get(self, job_id: str) -> Job | None:
        with unavailable_on_error():
            data = await self._redis.get(self._key("job", job_id))
        return Job.model_validate_json(data) if data is not None else None

    async def discard(self, job_id: str) -> None:
        with unavailable_on_error():
            await self._redis.delete(self._key("job", job_id))

    async def claim_push(self, job_id: str) -> bool:
        key = self._key("push", job_id)
        with unavailable_on_error():
            return bool(await self._redis.set(key, "1", nx=True, ex=self._claim))

    async def close(self) -> None:
        await self._redis.aclose()


def redis_store(settings: Settings) -> RedisJobStore:
    assert settings.redis_url is not None  # noqa: S101 - Settings.check_jobs_configured
    return RedisJobStore(
        settings.redis_url.get_secret_value(),
        namespace=NAMESPACE,
        retention_seconds=settings.job_retention_seconds,
        timeout_seconds=settings.job_timeout_seconds,
        push_seconds=settings.push_budget_seconds,
    )


class RedisJobs:
    """`AGENT_JOBS=redis`, the API side: store in Redis, enqueue for the workers."""

    def __init__(self, settings: Settings, agent: Agent) -> None:
        self._broker = build_broker(settings)
        actor = job_actor(self._broker)

        async def enqueue(job_id: str) -> None:
            with unavailable_on_error():
                await asyncio.to_thread(actor.send, job_id)  # redis-py's client blocks

        self.jobs = Jobs(settings, redis_store(settings), enqueue, f"{agent.name} (async)")

    def start(self) -> None:
        """Nothing to start: the workers run the jobs."""

    async def close(self) -> None:
        await self.jobs.store.close()
        self._broker.close()
