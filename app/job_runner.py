"""Running one job: the agent under the job's time limit, then the result push.

The same code runs a job in the serving process (`AGENT_JOBS=local`) and in a worker process
(`agent-endpoint worker`, `AGENT_JOBS=redis`):

1. Re-enter the request's trace: the job's span is started from the `traceparent`,
   `tracestate` and `baggage` of the request span, with the job's `arize_metadata`, so it is a
   child of the request span, carries the run ids and goes to the same Arize space.
2. Run the agent with `AGENT_JOB_TIMEOUT_SECONDS` as its limit (not the sync route's).
   `ctx.time_left()` counts down from that limit too.
3. While the agent runs, poll the store every `CANCEL_POLL_SECONDS` for a cancellation
   (`DELETE /jobs/{job_id}`, answered by whichever API process): then set `ctx.cancelled` and
   cancel the agent's task. Polling, rather than Redis pub/sub, also covers a cancellation
   made while no worker listened (a job delivered again after its worker was lost), and costs
   one `EXISTS` per running job and poll.
4. Record the result or the error on the job, by compare-and-set (`JobStore.update`): a job
   already finished, cancelled in particular, keeps its status, and the late result is
   dropped. Then push the job as stored (`app/result_push.py`) unless an earlier run of the
   same job already pushed it: a job picked up again after its worker was lost pushes at most
   once after a recorded success. A cancelled job is pushed too, as a failure with error type
   `cancelled`, so the experiment's row is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from typing import Any

from starlette.datastructures import Headers

from app.context import AgentContext, build_context
from app.errors import ApiError
from app.invoke import MAX_ERROR_MESSAGE, render
from app.job import FINISHED, Job, JobError, JobStatus, now
from app.job_store import JobStore, JobStoreUnavailableError
from app.redaction import Redactor
from app.result_push import ResultPusher
from app.runner import AgentRunner
from app.settings import Settings
from app.tracing import Tracing

log = logging.getLogger("agent_endpoint")

CLAIM_POLL_SECONDS = 2.0
CANCEL_POLL_SECONDS = 0.5
CANCELLED_STATUS = 499  # nginx's "client closed request", as for a caller that went away


class ResultPushes:
    """The push of a finished job's result, once per job across runs and processes."""

    def __init__(self, store: JobStore, pusher: ResultPusher | None) -> None:
        self.store = store
        self.pusher = pusher

    async def push(self, job: Job) -> None:
        if self.pusher is None:
            job.push.status = "off"
            await self.store.save(job)
            return
        while not await self.store.claim_push(job.job_id):
            # Another run of this job is pushing. Wait for its outcome; if that run died, its
            # claim lapses after the longest a push can take, and this run pushes instead.
            await asyncio.sleep(CLAIM_POLL_SECONDS)
            latest = await self.store.get(job.job_id)
            if latest is None or latest.push.status != "pending":
                return
        job.push = await self.pusher.push(job)
        await self.store.save(job)


def _start(job: Job) -> Job | None:
    if job.status in FINISHED:
        return None  # cancelled while queued, or finished by another run of the job
    job.status, job.started_at, job.attempts = JobStatus.RUNNING, now(), job.attempts + 1
    return job


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        *,
        runner: AgentRunner,
        tracing: Tracing,
        store: JobStore,
        pusher: ResultPusher | None,
        redact: Redactor,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.tracing = tracing
        self.store = store
        self.pushes = ResultPushes(store, pusher)
        self.redact = redact

    async def run(self, job_id: str) -> None:
        found = await self.store.get(job_id)
        if found is None:
            log.warning("job %s is not in the store (expired?); nothing to run", job_id)
            return
        job: Job | None = found
        if found.status not in FINISHED:
            job = await self._execute(job_id)
        if job is not None and job.push.status == "pending":
            await self.pushes.push(job)

    async def _execute(self, job_id: str) -> Job | None:
        """Run the agent; the job as stored at the end (None: it expired meanwhile)."""
        started = await self.store.update(job_id, _start)
        job = started.job
        if job is None or not started.changed:
            return job
        trace = self.tracing.start(Headers(headers=job.trace), job.arize_metadata, job.input)
        ctx = build_context(
            job.input, job.arize_metadata, self.settings, trace.span, timeout=self.runner.timeout
        )
        agent = asyncio.create_task(self.runner.run(job.input, ctx))
        watch = asyncio.create_task(self._watch_cancel(job_id, ctx, agent))
        try:
            try:
                body = render(await agent)
            finally:
                watch.cancel()
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if not _fired(watch) or (task is not None and task.cancelling()):
                raise  # this task is cancelled (shutdown), not the job
            message = f"the job was cancelled (DELETE /jobs/{job_id}) while the agent ran"
            trace.fail(CANCELLED_STATUS, "cancelled", message, exc)
        except ApiError as exc:  # the time limit, an output that is not JSON
            job.status = JobStatus.FAILED
            job.error = JobError(type=exc.error_type, message=exc.message)
            trace.fail(exc.status_code, exc.error_type, exc.message, exc)
        except Exception as exc:  # noqa: BLE001 - any agent failure is recorded on the job
            stack = self.redact("".join(traceback.format_exception(exc)))
            ctx.logger.error("agent raised in job %s:\n%s", job.job_id, stack)  # noqa: TRY400
            detail = self.redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_MESSAGE]
            job.status = JobStatus.FAILED
            job.error = JobError(type="agent_error", message=f"the agent raised {detail}")
            trace.fail(500, "agent_error", detail, exc)
        else:
            job.status, job.result = JobStatus.SUCCEEDED, json.loads(body)
            trace.record_output(body)
        finally:
            trace.end()
        return await self._finish(job, ctx)

    async def _finish(self, outcome: Job, ctx: AgentContext) -> Job | None:
        """Store the run's outcome unless the job finished meanwhile (cancelled, or finished
        by another run of it): the first to finish wins."""
        finished_at = now()

        def finish(job: Job) -> Job | None:
            if job.status in FINISHED or outcome.status not in FINISHED:
                return None
            job.status, job.result, job.error = outcome.status, outcome.result, outcome.error
            job.finished_at = finished_at
            return job

        stored = await self.store.update(outcome.job_id, finish)
        job = stored.job
        if job is not None and not stored.changed and outcome.status in FINISHED:
            ctx.logger.info(
                "job %s was %s before its run ended; the run's outcome is dropped",
                outcome.job_id, job.status.value,
            )  # fmt: skip
        return job

    async def _watch_cancel(self, job_id: str, ctx: AgentContext, agent: asyncio.Task[Any]) -> bool:
        """Poll for a cancellation; on one, tell the agent and cancel its task."""
        while True:
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            try:
                if await self.store.cancel_requested(job_id):
                    break
            except JobStoreUnavailableError as exc:
                log.warning(
                    "job %s: cannot check for a cancellation (%s); still trying", job_id, exc
                )
        ctx.logger.info("job %s cancelled; stopping its agent", job_id)
        ctx.cancelled.set()
        agent.cancel()
        return True


def _fired(watch: asyncio.Task[bool]) -> bool:
    return watch.done() and not watch.cancelled() and watch.exception() is None and watch.result()
