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

Through a Redis outage or restart (`app/redis_jobs.py`), a run keeps going: every store call
is retried with backoff while the store does not answer, for as long as the job's own budget
(its time limit plus the longest push) allows, so the message is neither failed nor
dead-lettered. One run of a job at a time holds its lease (`JobStore.hold`), renewed every
third of AGENT_JOB_HEARTBEAT_SECONDS: a second delivery of the job (dramatiq re-queues the
messages of a worker it took for dead, the sweep re-queues a job whose lease lapsed) waits
while the lease is live, takes the job over once the lease has stayed lapsed for a whole
heartbeat period (its holder is gone), and does nothing if the job is finished and pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.datastructures import Headers

from app.context import AgentContext, build_context
from app.errors import ApiError
from app.invoke import MAX_ERROR_MESSAGE, render
from app.job import FINISHED, Job, JobError, JobStatus, PushState, now
from app.job_store import Change, JobStore, JobStoreUnavailableError, Updated
from app.redaction import Redactor
from app.result_push import ResultPusher
from app.runner import AgentRunner
from app.settings import Settings
from app.tracing import Tracing

log = logging.getLogger("agent_endpoint")

CLAIM_POLL_SECONDS = 2.0
CANCEL_POLL_SECONDS = 0.5
HOLD_POLL_SECONDS = 0.5
CANCELLED_STATUS = 499  # nginx's "client closed request", as for a caller that went away
RETRY_FIRST_SECONDS = 0.1  # store retries: the first wait, doubled up to the longest
RETRY_LONGEST_SECONDS = 2.0

T = TypeVar("T")


def settled(job: Job) -> bool:
    """Nothing left to do for the job: it ended and its push is done (or off)."""
    return job.status in FINISHED and job.push.status != "pending"


class PatientStore:
    """The store as one run sees it: a call that finds the store away is retried, waiting
    0.1 s doubled up to 2 s, until `deadline` (monotonic); then the error goes up."""

    def __init__(self, store: JobStore, deadline: float, job_id: str) -> None:
        self.store = store
        self.deadline = deadline
        self._job_id = job_id

    async def _patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = RETRY_FIRST_SECONDS
        failed_since: float | None = None
        while True:
            try:
                result = await call()
            except JobStoreUnavailableError as exc:
                if time.monotonic() + delay > self.deadline:
                    raise
                if failed_since is None:
                    failed_since = time.monotonic()
                    log.warning(
                        "job %s: the job store did not answer to %s (%s); retrying until it "
                        "does, for up to %.0f s (the job's time limit plus its push)",
                        self._job_id, what, exc, self.deadline - failed_since,
                    )  # fmt: skip
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, RETRY_LONGEST_SECONDS)
            else:
                if failed_since is not None:
                    log.info(
                        "job %s: the job store answers again (%s, after %.1f s)",
                        self._job_id, what, time.monotonic() - failed_since,
                    )  # fmt: skip
                return result

    async def save(self, job: Job) -> None:
        await self._patiently("save", lambda: self.store.save(job))

    async def get(self, job_id: str) -> Job | None:
        return await self._patiently("read", lambda: self.store.get(job_id))

    async def discard(self, job_id: str) -> None:
        await self._patiently("discard", lambda: self.store.discard(job_id))

    async def update(self, job_id: str, change: Change) -> Updated:
        return await self._patiently("update", lambda: self.store.update(job_id, change))

    async def cancel_requested(self, job_id: str) -> bool:
        return await self.store.cancel_requested(job_id)  # polled: the next poll retries

    async def claim_push(self, job_id: str, claimer: str) -> bool:
        return await self._patiently("claim", lambda: self.store.claim_push(job_id, claimer))

    async def hold(self, job_id: str, holder: str, seconds: float) -> bool:
        return await self._patiently("hold", lambda: self.store.hold(job_id, holder, seconds))

    async def renew(self, job_id: str, holder: str, seconds: float) -> bool:
        return await self.store.renew(job_id, holder, seconds)  # renewed again shortly

    async def held(self, job_id: str) -> bool:
        return await self._patiently("lease", lambda: self.store.held(job_id))

    async def release(self, job_id: str, holder: str, *, done: bool) -> None:
        await self._patiently("release", lambda: self.store.release(job_id, holder, done=done))

    async def running_jobs(self) -> list[str]:
        return await self._patiently("list", self.store.running_jobs)

    async def unlist(self, job_id: str) -> bool:
        return await self._patiently("unlist", lambda: self.store.unlist(job_id))

    async def relist(self, job_id: str) -> None:
        await self._patiently("relist", lambda: self.store.relist(job_id))

    async def close(self) -> None:
        """The run does not own the store."""


class ResultPushes:
    """The push of a finished job's result, once per job across runs and processes."""

    def __init__(self, store: JobStore, pusher: ResultPusher | None) -> None:
        self.store = store
        self.pusher = pusher

    async def push(self, job: Job, store: JobStore | None = None) -> None:
        """Push unless another run claimed the push; `store`: the run's (patient) view."""
        store = store or self.store
        if self.pusher is None:
            off = job.push.model_copy(update={"status": "off"})
            await store.update(job.job_id, _push_state(off))
            return
        claimer = secrets.token_hex(8)
        if not await store.claim_push(job.job_id, claimer):
            log.info("the result of job %s is pushed by another run; waiting for it", job.job_id)
        while not await store.claim_push(job.job_id, claimer):
            # Another run of this job is pushing. Wait for its outcome; if that run died, its
            # claim lapses after the longest a push can take, and this run pushes instead.
            await asyncio.sleep(CLAIM_POLL_SECONDS)
            latest = await store.get(job.job_id)
            if latest is None or latest.push.status != "pending":
                return
        job.push = await self.pusher.push(job)
        await store.update(job.job_id, _push_state(job.push))


def _push_state(state: PushState) -> Change:
    def change(job: Job) -> Job:
        job.push = state
        return job

    return change


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
        self.lease_seconds = settings.job_heartbeat_seconds
        # How long a run keeps at its job while the store is away: the job's own budget.
        self.budget_seconds = settings.job_timeout_seconds + settings.push_budget_seconds

    async def run(self, job_id: str) -> None:
        store = PatientStore(self.store, time.monotonic() + self.budget_seconds, job_id)
        found = await store.get(job_id)
        if found is None:
            log.warning("job %s is not in the store (expired?); nothing to run", job_id)
            return
        if settled(found):
            return  # a second delivery of a job already finished and pushed
        holder = secrets.token_hex(8)
        if not await self._hold(store, job_id, holder):
            return
        renewing = asyncio.create_task(self._renew(job_id, holder), name=f"lease-{job_id}")
        done = False
        try:
            job = await store.get(job_id)
            if job is not None and job.status not in FINISHED:
                job = await self._execute(store, job_id)
            if job is not None and job.push.status == "pending":
                await self.pushes.push(job, store)
            done = True
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            # Not patient: on shutdown or after the budget, the lease lapses by itself and the
            # job stays listed for the sweep.
            with contextlib.suppress(JobStoreUnavailableError):
                await self.store.release(job_id, holder, done=done)

    async def _hold(self, store: PatientStore, job_id: str, holder: str) -> bool:
        """Take the job's lease: at once for a job never started; for one another run started,
        only once its lease has stayed lapsed for a whole lease period (that run is gone, not
        just reconnecting after a Redis outage). False: the job got settled meanwhile, or this
        delivery outwaited the job's budget (the run holding it is alive and will finish)."""
        lapsed_since: float | None = None
        while True:
            job = await store.get(job_id)
            if job is None or settled(job):
                return False
            if await store.held(job_id):
                lapsed_since = None
            else:
                waited = time.monotonic() - (lapsed_since or time.monotonic())
                never_started = job.started_at is None  # queued, or cancelled while queued
                if never_started or waited >= self.lease_seconds:
                    if await store.hold(job_id, holder, self.lease_seconds):
                        if not never_started:
                            log.warning(
                                "job %s: its run's lease lapsed (worker lost?); running it again",
                                job_id,
                            )
                        return True
                    lapsed_since = None
                elif lapsed_since is None:
                    lapsed_since = time.monotonic()
            if time.monotonic() > store.deadline:
                log.warning("job %s: still held by another run past its budget; left to it", job_id)
                return False
            await asyncio.sleep(HOLD_POLL_SECONDS)

    async def _renew(self, job_id: str, holder: str) -> None:
        """Keep the lease while the run lasts, a third of its period at a time; a renewal the
        store misses is made at the next one (quicker while the store is away)."""
        while True:
            try:
                if not await self.store.renew(job_id, holder, self.lease_seconds):
                    log.warning(
                        "job %s: another run took it over (this one was silent past "
                        "AGENT_JOB_HEARTBEAT_SECONDS); both run, the first to finish wins, the "
                        "result is pushed once",
                        job_id,
                    )
                    return
            except JobStoreUnavailableError:
                await asyncio.sleep(min(RETRY_LONGEST_SECONDS, self.lease_seconds / 3))
                continue
            await asyncio.sleep(self.lease_seconds / 3)

    async def _execute(self, store: PatientStore, job_id: str) -> Job | None:
        """Run the agent; the job as stored at the end (None: it expired meanwhile)."""
        started = await store.update(job_id, _start)
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
        return await self._finish(store, job, ctx)

    async def _finish(self, store: PatientStore, outcome: Job, ctx: AgentContext) -> Job | None:
        """Store the run's outcome unless the job finished meanwhile (cancelled, or finished
        by another run of it): the first to finish wins."""
        finished_at = now()

        def finish(job: Job) -> Job | None:
            if job.status in FINISHED or outcome.status not in FINISHED:
                return None
            job.status, job.result, job.error = outcome.status, outcome.result, outcome.error
            job.finished_at = finished_at
            return job

        stored = await store.update(outcome.job_id, finish)
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
