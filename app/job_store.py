"""Where jobs are kept between `POST /invoke/async`, the worker and `GET /jobs/{job_id}`.

- `MemoryJobStore`, the embedded mode's (`AGENT_JOBS=local`): a dict in the serving process,
  gone with it.
- `RedisJobStore` (`AGENT_JOBS=redis`, in `app/redis_jobs.py`): one JSON document per job in
  Redis, shared by every API replica and worker.

Finished jobs are forgotten `AGENT_JOB_RETENTION_SECONDS` after they end. `claim_push` makes
the result push happen once per job even when two runs of the same job (a worker presumed
dead that was not) finish together: the first claim wins.

`update` is the compare-and-set through which a job changes status (start, finish, cancel):
it reads the job, asks `change` what the job becomes (None: leave it), and stores that only
if nobody changed the job in between (Redis: WATCH/MULTI, retried on a conflict). So a
cancellation and an agent's late result cannot both win: whichever comes second sees the
job finished and leaves it alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import NamedTuple, Protocol

from app.job import FINISHED, Job, JobStatus, now

Change = Callable[[Job], Job | None]


class Updated(NamedTuple):
    job: Job | None  # as stored after the update; None: no such job
    changed: bool


class JobStoreUnavailableError(Exception):
    """The store (or the queue behind it) did not answer; the caller may retry later."""


class JobStore(Protocol):
    async def save(self, job: Job) -> None:
        """Store the job as it is now (create or replace)."""

    async def get(self, job_id: str) -> Job | None:
        """The job, or None if it never existed or has expired."""

    async def discard(self, job_id: str) -> None:
        """Forget a job that was never queued."""

    async def update(self, job_id: str, change: Change) -> Updated:
        """Store `change(job)` unless it is None, atomically; the job as stored after."""

    async def cancel_requested(self, job_id: str) -> bool:
        """True once the job is cancelled; polled by the run of the job, so it is cheap."""

    async def claim_push(self, job_id: str) -> bool:
        """True for the first caller only: it pushes the job's result."""

    async def close(self) -> None: ...


class MemoryJobStore:
    def __init__(self, retention_seconds: float, push_seconds: float) -> None:
        self._retention = timedelta(seconds=retention_seconds)
        self._push_seconds = push_seconds
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # oldest change first
        self._claims: dict[str, float] = {}  # job id -> when the claim lapses (monotonic)

    async def save(self, job: Job) -> None:
        self._jobs[job.job_id] = job.model_copy(deep=True)
        self._jobs.move_to_end(job.job_id)
        self._forget_expired()

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job.model_copy(deep=True) if job is not None else None

    async def discard(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    async def update(self, job_id: str, change: Change) -> Updated:
        # No await between the read and the write: atomic on the event loop.
        job = self._jobs.get(job_id)
        if job is None:
            return Updated(None, changed=False)
        new = change(job.model_copy(deep=True))
        if new is None:
            return Updated(job.model_copy(deep=True), changed=False)
        await self.save(new)
        return Updated(new.model_copy(deep=True), changed=True)

    async def cancel_requested(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        return job is not None and job.status is JobStatus.CANCELLED

    async def claim_push(self, job_id: str) -> bool:
        if self._claims.get(job_id, 0.0) > time.monotonic():
            return False
        self._claims[job_id] = time.monotonic() + self._push_seconds
        return True

    async def close(self) -> None:
        self._jobs.clear()
        self._claims.clear()

    def _forget_expired(self) -> None:
        horizon = now() - self._retention
        while self._jobs:
            oldest = next(iter(self._jobs.values()))
            ended = oldest.finished_at
            if oldest.status not in FINISHED or ended is None or ended > horizon:
                return  # the oldest change is recent or unfinished: so is the rest, mostly
            self._jobs.popitem(last=False)
            self._claims.pop(oldest.job_id, None)
