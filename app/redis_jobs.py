"""The Redis mode (`AGENT_JOBS=redis`): jobs stored in Redis and queued for the workers.

Only imported in that mode (`app.jobs.build_jobs`, `app/worker.py`). Redis failures leave
here as `JobStoreUnavailableError`, which the routes answer with 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio
from redis.exceptions import RedisError, WatchError

from app.entrypoint import Agent
from app.job import FINISHED, Job, JobStatus
from app.job_broker import NAMESPACE, build_broker, job_actor
from app.job_runner import ResultPushes
from app.job_store import Change, JobStoreUnavailableError, Updated
from app.jobs import Jobs
from app.redaction import Redactor
from app.result_push import build_pusher
from app.settings import Settings


@contextmanager
def unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise JobStoreUnavailableError(type(exc).__name__) from exc


MAX_CONNECTIONS = 64

# KEYS[1] holds ARGV[1] for ARGV[2] ms, unless another value is there: a lease or a push claim
# that its owner may take again (a retry after a lost answer) and nobody else may.
TAKE = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# TAKE on the lease KEYS[1], and job ARGV[3] listed in the running set KEYS[2] either way.
HOLD = (
    """
redis.call('SADD', KEYS[2], ARGV[3])
"""
    + TAKE
)
# The lease KEYS[1] dropped if ARGV[1] holds it; job ARGV[2] unlisted when ARGV[3] is 1 and
# no other run holds it.
RELEASE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1])
  current = false
end
if ARGV[3] == '1' and current == false then
  redis.call('SREM', KEYS[2], ARGV[2])
end
return 1
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


CONNECTION_WAIT_SECONDS = 10


class RedisJobStore:
    """Jobs under `<namespace>:job:<id>`; push claims under `<namespace>:push:<id>`; a
    cancelled job also has `<namespace>:cancel:<id>`, which its running worker polls (a key
    that exists or not is cheaper to poll than the job's document, which holds its input).
    The run holding a job renews `<namespace>:lease:<id>`; `<namespace>:running` lists the
    jobs held and not done, which the workers' sweep (`app/job_sweep.py`) checks.

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
        self._running = f"{namespace}:running"  # the ids of jobs held by a run, for the sweep
        self._take = self._redis.register_script(TAKE)
        self._hold = self._redis.register_script(HOLD)
        self._release = self._redis.register_script(RELEASE)

    def _key(self, kind: str, job_id: str) -> str:
        return f"{self._prefix}:{kind}:{job_id}"

    def _ttl(self, job: Job) -> int:
        return self._retention if job.status in FINISHED else self._unfinished

    async def save(self, job: Job) -> None:
        with unavailable_on_error():
            await self._redis.set(
                self._key("job", job.job_id), job.model_dump_json(), ex=self._ttl(job)
            )

    async def get(self, job_id: str) -> Job | None:
        with unavailable_on_error():
            data = await self._redis.get(self._key("job", job_id))
        return Job.model_validate_json(data) if data is not None else None

    async def discard(self, job_id: str) -> None:
        with unavailable_on_error():
            await self._redis.delete(self._key("job", job_id))

    async def update(self, job_id: str, change: Change) -> Updated:
        """WATCH the job, read it, MULTI/EXEC the change; another writer in between makes
        EXEC fail (WatchError) and the whole read-change-write starts over."""
        key = self._key("job", job_id)
        with unavailable_on_error():
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        data = await pipe.get(key)
                        if data is None:
                            return Updated(None, changed=False)
                        job = Job.model_validate_json(data)
                        new = change(job.model_copy(deep=True))
                        if new is None:
                            return Updated(job, changed=False)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(key, new.model_dump_json(), ex=self._ttl(new))
                        if new.status is JobStatus.CANCELLED:
                            pipe.set(self._key("cancel", job_id), "1", ex=self._unfinished)
                        await pipe.execute()
                        return Updated(new, changed=True)
                    except WatchError:
                        continue

    async def cancel_requested(self, job_id: str) -> bool:
        with unavailable_on_error():
            return bool(await self._redis.exists(self._key("cancel", job_id)))

    async def claim_push(self, job_id: str, claimer: str) -> bool:
        key = self._key("push", job_id)
        with unavailable_on_error():
            return bool(await self._take(keys=[key], args=[claimer, self._claim * 1000]))

    async def hold(self, job_id: str, holder: str, seconds: float) -> bool:
        keys = [self._key("lease", job_id), self._running]
        with unavailable_on_error():
            return bool(await self._hold(keys=keys, args=[holder, _ms(seconds), job_id]))

    async def renew(self, job_id: str, holder: str, seconds: float) -> bool:
        with unavailable_on_error():
            return bool(
                await self._take(keys=[self._key("lease", job_id)], args=[holder, _ms(seconds)])
            )

    async def held(self, job_id: str) -> bool:
        with unavailable_on_error():
            return bool(await self._redis.exists(self._key("lease", job_id)))

    async def release(self, job_id: str, holder: str, *, done: bool) -> None:
        keys = [self._key("lease", job_id), self._running]
        with unavailable_on_error():
            await self._release(keys=keys, args=[holder, job_id, int(done)])

    async def running_jobs(self) -> list[str]:
        with unavailable_on_error():
            members = await self._redis.smembers(self._running)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def unlist(self, job_id: str) -> bool:
        with unavailable_on_error():
            return bool(await self._redis.srem(self._running, job_id))

    async def relist(self, job_id: str) -> None:
        with unavailable_on_error():
            await self._redis.sadd(self._running, job_id)

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

    def __init__(self, settings: Settings, agent: Agent, redact: Redactor) -> None:
        self._broker = build_broker(settings)
        actor = job_actor(self._broker)

        async def enqueue(job_id: str) -> None:
            with unavailable_on_error():
                await asyncio.to_thread(actor.send, job_id)  # redis-py's client blocks

        store = redis_store(settings)
        # Pushes a job cancelled before it started (a running one is pushed by its worker).
        self._pusher = build_pusher(settings, redact)
        pushes = ResultPushes(store, self._pusher)
        self.jobs = Jobs(settings, store, enqueue, f"{agent.name} (async)", pushes)

    def start(self) -> None:
        """Nothing to start: the workers run the jobs."""

    async def close(self) -> None:
        await self.jobs.close()
        if self._pusher is not None:
            await self._pusher.close()
        await self.jobs.store.close()
        self._broker.close()
