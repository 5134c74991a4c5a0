"""The async mode's pieces, put together once per process from the settings.

`AGENT_JOBS` chooses where jobs run:

- `local` (the default without `REDIS_URL`): in the serving process, `app/job_queue.py`, with
  jobs kept in memory (`app/job_store.py`). Nothing to run besides the server, nothing
  durable: a restart loses queued and running jobs, and with several server processes a
  status request may reach a process that does not know the job.
- `redis` (the default with `REDIS_URL`): jobs kept in Redis and queued through dramatiq's
  Redis broker (`app/redis_jobs.py`, `app/job_broker.py`); `agent-endpoint worker` processes
  run them
  (`app/worker.py`). Any number of API replicas and workers; a job survives a lost worker
  and a Redis restart (with Redis persistence on).
- `off`: no `POST /invoke/async`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from app.entrypoint import Agent
from app.envelope import ArizeMetadata
from app.job import Job, JobStatus, PushState, new_job_id, now
from app.job_queue import LocalJobQueue
from app.job_runner import JobRunner
from app.job_store import JobStore, MemoryJobStore
from app.redaction import Redactor
from app.result_push import build_pusher
from app.runner import AgentRunner
from app.settings import Settings
from app.tracing import Tracing

Submit = Callable[[str], Awaitable[None]]


class Jobs:
    """Creating, queuing and looking up jobs, whatever runs them."""

    def __init__(self, settings: Settings, store: JobStore, submit: Submit, span_name: str) -> None:
        self.store = store
        self._submit = submit
        self.span_name = span_name
        self.retention_seconds = settings.job_retention_seconds
        self._push_target = settings.push_target

    def new(
        self, payload: dict[str, Any], metadata: ArizeMetadata | None, trace: dict[str, str]
    ) -> Job:
        target = self._push_target
        return Job(
            job_id=new_job_id(),
            run_id=metadata.run_id if metadata else None,
            status=JobStatus.QUEUED,
            submitted_at=now(),
            push=PushState(target=target, status="off" if target == "none" else "pending"),
            input=payload,
            arize_metadata=metadata,
            trace=trace,
        )

    async def submit(self, job: Job) -> None:
        """Store the job, then queue it; a job the queue refuses is not kept."""
        await self.store.save(job)
        try:
            await self._submit(job.job_id)
        except BaseException:
            await self.store.discard(job.job_id)
            raise


class LocalJobs:
    """`AGENT_JOBS=local`: the queue's consumers run jobs in this process."""

    def __init__(
        self, settings: Settings, agent: Agent, tracing: Tracing, redact: Redactor
    ) -> None:
        store = MemoryJobStore(settings.job_retention_seconds, settings.push_budget_seconds)
        self.runner = job_agent_runner(agent, settings)
        self.pusher = build_pusher(settings, redact)
        self.job_runner = JobRunner(
            settings,
            runner=self.runner,
            tracing=tracing,
            store=store,
            pusher=self.pusher,
            redact=redact,
        )
        self.queue = LocalJobQueue(
            self.job_runner.run,
            concurrency=settings.job_concurrency,
            max_queued=settings.job_queue_size,
        )
        self.jobs = Jobs(settings, store, self.queue.submit, f"{agent.name} (async)")
        self._grace = settings.job_grace_seconds

    def start(self) -> None:
        self.queue.start()

    async def close(self) -> None:
        await self.queue.close(self._grace)
        self.runner.close()
        if self.pusher is not None:
            await self.pusher.close()
        await self.jobs.store.close()


def job_agent_runner(agent: Agent, settings: Settings) -> AgentRunner:
    """The agent under the jobs' limits. A job waits for a free slot rather than fail: a slot
    stays taken while a timed-out sync agent's thread still runs (app/runner.py)."""
    return AgentRunner(
        agent,
        settings,
        timeout=settings.job_timeout_seconds,
        capacity=settings.job_concurrency,
        queue_wait=settings.job_timeout_seconds,
        timeout_variable="AGENT_JOB_TIMEOUT_SECONDS",
    )


class JobsRuntime(Protocol):
    jobs: Jobs

    def start(self) -> None: ...

    async def close(self) -> None: ...


def build_jobs(
    settings: Settings, agent: Agent, tracing: Tracing, redact: Redactor
) -> JobsRuntime | None:
    """The jobs of this API process, as `AGENT_JOBS` says; None when off."""
    if settings.jobs_mode == "local":
        return LocalJobs(settings, agent, tracing, redact)
    if settings.jobs_mode == "redis":
        # Imported here: the Redis client and dramatiq cost every process about 8 MiB.
        from app.redis_jobs import RedisJobs  # noqa: PLC0415

        return RedisJobs(settings, agent)
    return None
