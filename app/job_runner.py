"""Running one job: the agent under the job's time limit, then the result push.

The same code runs a job in the serving process (`AGENT_JOBS=local`) and in a worker process
(`agent-endpoint worker`, `AGENT_JOBS=redis`):

1. Re-enter the request's trace: the job's span is started from the `traceparent`,
   `tracestate` and `baggage` of the request span, with the job's `arize_metadata`, so it is a
   child of the request span, carries the run ids and goes to the same Arize space.
2. Run the agent with `AGENT_JOB_TIMEOUT_SECONDS` as its limit (not the sync route's).
3. Record the result or the error on the job, then push it (`app/result_push.py`) unless an
   earlier run of the same job already pushed it: a job picked up again after its worker was
   lost pushes at most once after a recorded success.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback

from starlette.datastructures import Headers

from app.context import build_context
from app.errors import ApiError
from app.invoke import MAX_ERROR_MESSAGE, render
from app.job import FINISHED, Job, JobError, JobStatus, now
from app.job_store import JobStore
from app.redaction import Redactor
from app.result_push import ResultPusher
from app.runner import AgentRunner
from app.settings import Settings
from app.tracing import Tracing

log = logging.getLogger("agent_endpoint")

CLAIM_POLL_SECONDS = 2.0


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
        self.pusher = pusher
        self.redact = redact

    async def run(self, job_id: str) -> None:
        job = await self.store.get(job_id)
        if job is None:
            log.warning("job %s is not in the store (expired?); nothing to run", job_id)
            return
        if job.status not in FINISHED:
            job = await self._execute(job)
        if job.push.status == "pending":
            await self._push(job)

    async def _execute(self, job: Job) -> Job:
        job.status, job.started_at, job.attempts = JobStatus.RUNNING, now(), job.attempts + 1
        await self.store.save(job)
        trace = self.tracing.start(Headers(headers=job.trace), job.arize_metadata, job.input)
        ctx = build_context(job.input, job.arize_metadata, self.settings, trace.span)
        try:
            body = render(await self.runner.run(job.input, ctx))
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
        job.finished_at = now()
        await self.store.save(job)
        return job

    async def _push(self, job: Job) -> None:
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
