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

`DELETE /jobs/{id}` (`Jobs.cancel`) marks an unfinished job `cancelled` in the store, by
compare-and-set. A queued job then never starts, and this process pushes it at once (no run
will); a running job's run notices within `CANCEL_POLL_SECONDS`, wherever it runs, stops the
agent and pushes it (`app/job_runner.py`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from app.entrypoint import Agent
from app.envelope import ArizeMetadata
from app.job import FINISHED, Job, JobError, JobStatus, PushState, new_job_id, now
from app.job_queue import LocalJobQueue
from app.job_runner import JobRunner, ResultPushes
from app.job_store import JobStore, MemoryJobStore, Updated
from app.redaction import Redactor
from app.result_push import build_pusher
from app.runner import AgentRunner
from app.settings import Settings
from app.tracing import Tracing

Submit = Callable[[str], Awaitable[None]]

log = logging.getLogger("agent_endpoint")


def cancel(job: Job) -> Job | None:
    """The change `DELETE /jobs/{id}` makes: an unfinished job becomes `cancelled`, with the
    error type the pushed record's label shows; a finished one stays as it is."""
    if job.status in FINISHED:
        return None
    stage = "while it ran" if job.status is JobStatus.RUNNING else "before it started"
    job.status, job.finished_at = JobStatus.CANCELLED, now()
    message = f"cancelled by DELETE /jobs/{job.job_id} {stage}"
    job.error = JobError(type="cancelled", message=message)
    return job


class Jobs:
    """Creating, queuing, looking up and cancelling jobs, whatever runs them."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        submit: Submit,
        span_name: str,
        pushes: ResultPushes | None = None,
    ) -> None:
        self.store = store
        self._submit = submit
        self.span_name = span_name
        self.retention_seconds = settings.job_retention_seconds
        self.async_status = settings.async_status
        self.access = settings.job_access
        # The embedded store forgets the oldest finished jobs past this many (404 says so).
        self.max_jobs = settings.job_store_max_jobs if settings.jobs_mode == "local" else None
        # Where callers reach the service (AGENT_PUBLIC_URL): status URLs are built on it, not
        # on a Host header anyone can send.
        self.public_url = settings.public_url
        self._push_target = settings.push_target
        self._pushes = pushes or ResultPushes(store, None)
        self._grace = settings.job_grace_seconds
        self._pushing: set[asyncio.Task[None]] = set()

    def new(
        self,
        payload: dict[str, Any],
        metadata: ArizeMetadata | None,
        trace: dict[str, str],
        submitter: str | None = None,
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
            submitter=submitter,
        )

    def may_access(self, job: Job, key_fingerprint: str | None) -> bool:
        """AGENT_JOB_ACCESS=submitter: only the key that submitted the job sees or cancels it
        (a job submitted with auth off has no submitter); `any`: every configured key."""
        if self.access == "any" or job.submitter is None:
            return True
        return key_fingerprint is not None and hmac.compare_digest(job.submitter, key_fingerprint)

    async def submit(self, job: Job) -> None:
        """Store the job, then queue it; a job the queue refuses is not kept."""
        await self.store.save(job)
        try:
            await self._submit(job.job_id)
        except BaseException:
            await self.store.discard(job.job_id)
            raise

    async def cancel(self, job_id: str, key_fingerprint: str | None = None) -> Updated:
        """Cancel the job unless it finished; `changed` says whether this call did. A job the
        caller may not access (`may_access`) is not there for it."""
        if self.access != "any":
            found = await self.store.get(job_id)
            if found is None or not self.may_access(found, key_fingerprint):
                return Updated(None, changed=False)
        updated = await self.store.update(job_id, cancel)
        job = updated.job
        if updated.changed and job is not None and job.started_at is None:
            # Never started: no run will notice the cancellation, so the push is ours. The
            # queue still holds the job id; when its turn comes the job is skipped, and pushed
            # then only if this push was lost (the push claim makes it once).
            task = asyncio.create_task(self._pushes.push(job), name=f"push-{job_id}")
            self._pushing.add(task)
            task.add_done_callback(self._pushed)
        return updated

    def _pushed(self, task: asyncio.Task[None]) -> None:
        self._pushing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("push of cancelled job failed", exc_info=task.exception())

    async def close(self) -> None:
        """Give the pushes of cancelled jobs AGENT_JOB_GRACE_SECONDS; a push cut short is
        made by the job's next run, once its claim lapses."""
        if self._pushing:
            await asyncio.wait(set(self._pushing), timeout=self._grace)
        for task in set(self._pushing):
            task.cancel()
        await asyncio.gather(*self._pushing, return_exceptions=True)


class LocalJobs:
    """`AGENT_JOBS=local`: the queue's consumers run jobs in this process."""

    def __init__(
        self, settings: Settings, agent: Agent, tracing: Tracing, redact: Redactor
    ) -> None:
        store = MemoryJobStore(
            settings.job_retention_seconds,
            settings.push_budget_seconds,
            max_jobs=settings.job_store_max_jobs,
            max_bytes=settings.job_store_max_bytes,
        )
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
        self.jobs = Jobs(
            settings,
            store,
            self.queue.submit,
            f"{agent.name} (async)",
            self.job_runner.pushes,
        )
        self._grace = settings.job_grace_seconds

    def start(self) -> None:
        self.queue.start()

    async def close(self) -> None:
        await self.queue.close(self._grace)
        await self.jobs.close()
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

        return RedisJobs(settings, agent, redact)
    return None
