"""Where jobs are kept between `POST /invoke/async`, the worker and `GET /jobs/{job_id}`.

- `MemoryJobStore`, the embedded mode's (`AGENT_JOBS=local`): a dict in the serving process,
  gone with it.
- `RedisJobStore` (`AGENT_JOBS=redis`, in `app/redis_jobs.py`): one JSON document per job in
  Redis, shared by every API replica and worker.

Finished jobs are forgotten `AGENT_JOB_RETENTION_SECONDS` after they end (the memory store
also within AGENT_JOB_STORE_MAX_JOBS / _MAX_BYTES). `claim_push` makes the result push happen
once per job even when two runs of the same job (a worker presumed dead that was not) finish
together: the first claim wins. `hold`/`renew`/`release` are the lease one run of a job holds
while it runs, and the running list the sweep reads (`app/job_runner.py`, `app/job_sweep.py`).

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

    async def claim_push(self, job_id: str, claimer: str) -> bool:
        """True for the first claimer only (again for that claimer: a retry after a lost
        answer): it pushes the job's result. The claim lapses after the longest push."""

    async def hold(self, job_id: str, holder: str, seconds: float) -> bool:
        """Take the job's lease for `seconds` unless another holder's is live, and list the
        job as running; True if `holder` has it. One run of a job at a time holds it."""

    async def renew(self, job_id: str, holder: str, seconds: float) -> bool:
        """Extend `holder`'s lease (or take it again if it lapsed); False if another holds it."""

    async def held(self, job_id: str) -> bool:
        """Whether some run's lease on the job is live."""

    async def release(self, job_id: str, holder: str, *, done: bool) -> None:
        """The run is over: drop `holder`'s lease; `done` (the job is settled): also take the
        job off the running list (a run cut short leaves it there, for the sweep)."""

    async def running_jobs(self) -> list[str]:
        """Jobs held and not released: the sweep's candidates (`app/job_sweep.py`)."""

    async def unlist(self, job_id: str) -> bool:
        """Take the job off the running list; True for the one caller that did."""

    async def relist(self, job_id: str) -> None:
        """Put the job back on the running list (a sweep that could not re-queue it)."""

    async def close(self) -> None: ...


class MemoryJobStore:
    """Jobs in a dict of the serving process, within bounds: its memory would otherwise grow
    with every result kept for the whole retention (400 results of 1 MB: +390 MiB RSS).

    Only settled jobs (finished, push done) are bounded, oldest settled first; a queued,
    running or still-pushing job is never touched. Past `max_bytes` (the JSON size of their
    results and inputs) the oldest lose their result and input: their status stays readable,
    with `result_dropped` and a `note` naming the setting. Past `max_jobs` the oldest are
    forgotten (404), as at the end of their retention.
    """

    def __init__(
        self,
        retention_seconds: float,
        push_seconds: float,
        *,
        max_jobs: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._retention = timedelta(seconds=retention_seconds)
        self._push_seconds = push_seconds
        self._max_jobs = max_jobs
        self._max_bytes = max_bytes
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # oldest change first
        self._claims: dict[str, tuple[str, float]] = {}  # job id -> (claimer, lapses at)
        self._leases: dict[str, tuple[str, float]] = {}  # job id -> (holder, lapses at)
        self._running: set[str] = set()  # held once, not released yet
        self._settled: OrderedDict[str, int] = OrderedDict()  # settled first -> bytes kept
        self._heavy: OrderedDict[str, None] = OrderedDict()  # settled with bytes kept
        self.kept_bytes = 0

    async def save(self, job: Job) -> None:
        stored = job.model_copy(deep=True)
        self._jobs[job.job_id] = stored
        self._jobs.move_to_end(job.job_id)
        self._account(stored)
        self._forget_expired()
        self._bound()

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job.model_copy(deep=True) if job is not None else None

    async def discard(self, job_id: str) -> None:
        self._forget(job_id)

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

    async def claim_push(self, job_id: str, claimer: str) -> bool:
        return _take(self._claims, job_id, claimer, self._push_seconds)

    async def hold(self, job_id: str, holder: str, seconds: float) -> bool:
        self._running.add(job_id)
        return _take(self._leases, job_id, holder, seconds)

    async def renew(self, job_id: str, holder: str, seconds: float) -> bool:
        return _take(self._leases, job_id, holder, seconds)

    async def held(self, job_id: str) -> bool:
        return self._leases.get(job_id, ("", 0.0))[1] > time.monotonic()

    async def release(self, job_id: str, holder: str, *, done: bool) -> None:
        if self._leases.get(job_id, ("", 0.0))[0] == holder:
            del self._leases[job_id]
            if done:
                self._running.discard(job_id)

    async def running_jobs(self) -> list[str]:
        return sorted(self._running)

    async def unlist(self, job_id: str) -> bool:
        listed = job_id in self._running
        self._running.discard(job_id)
        return listed

    async def relist(self, job_id: str) -> None:
        self._running.add(job_id)

    async def close(self) -> None:
        self._jobs.clear()
        self._claims.clear()
        self._leases.clear()
        self._running.clear()
        self._settled.clear()
        self._heavy.clear()
        self.kept_bytes = 0

    def _account(self, job: Job) -> None:
        """Keep the settled jobs' order and sizes up to date after a save of `job`."""
        job_id = job.job_id
        self.kept_bytes -= self._settled.get(job_id, 0)
        self._heavy.pop(job_id, None)
        if job.status not in FINISHED or job.push.status == "pending":
            self._settled.pop(job_id, None)
            return
        size = 0 if job.result_dropped else len(job.model_dump_json(include={"result", "input"}))
        self._settled[job_id] = size  # a settled job saved again keeps its place
        if size:
            self._heavy[job_id] = None
            self.kept_bytes += size

    def _bound(self) -> None:
        while self.kept_bytes > self._max_bytes and self._heavy:
            job_id, _ = self._heavy.popitem(last=False)
            self.kept_bytes -= self._settled[job_id]
            self._settled[job_id] = 0
            job = self._jobs[job_id]
            job.result, job.input, job.result_dropped = None, {}, True
            job.note = (
                f"the result was dropped to keep the embedded job store's finished jobs within "
                f"AGENT_JOB_STORE_MAX_BYTES={self._max_bytes} (oldest first); it was pushed as "
                "usual. Raise that setting, or set REDIS_URL to keep results in Redis"
            )
        while len(self._settled) > self._max_jobs:
            self._forget(next(iter(self._settled)))

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._claims.pop(job_id, None)
        self.kept_bytes -= self._settled.pop(job_id, 0)
        self._heavy.pop(job_id, None)

    def _forget_expired(self) -> None:
        horizon = now() - self._retention
        while self._jobs:
            oldest = next(iter(self._jobs.values()))
            ended = oldest.finished_at
            if oldest.status not in FINISHED or ended is None or ended > horizon:
                return  # the oldest change is recent or unfinished: so is the rest, mostly
            self._forget(oldest.job_id)


def _take(table: dict[str, tuple[str, float]], job_id: str, owner: str, seconds: float) -> bool:
    """`owner` takes or keeps the entry unless another owner's entry is still live."""
    current, lapses = table.get(job_id, ("", 0.0))
    if current != owner and lapses > time.monotonic():
        return False
    table[job_id] = (owner, time.monotonic() + seconds)
    return True
