"""The sweep: every worker looks for jobs left running with nobody holding them, and re-queues
them (`AGENT_JOBS=redis`).

A run holds its job's lease (`JobStore.hold`) and renews it while it lasts; the job stays on
the store's running list until it is finished and pushed. dramatiq re-queues the message of a
worker that died, but not one whose message is gone otherwise: failed by its time limit, or
acknowledged by a run that gave up on a store that stayed away past the job's budget. So each
worker, every AGENT_JOB_HEARTBEAT_SECONDS, reads the running list and, for a job whose lease
has stayed lapsed for a whole period (its run is gone, not reconnecting after an outage):

- forgets it if it expired or is settled (finished and pushed, but the release was lost);
- otherwise re-queues it: the next run finishes it, or only pushes it if its result was
  recorded. Taking it off the list first (`unlist`, which one sweeper wins) makes one sweeper
  re-queue it; a delivery that finds the job held by a live run just waits for that run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from app.job_runner import settled
from app.job_store import JobStore, JobStoreUnavailableError

log = logging.getLogger("agent_endpoint")

Enqueue = Callable[[str], Awaitable[None]]


class Sweeper:
    def __init__(self, store: JobStore, enqueue: Enqueue, period_seconds: float) -> None:
        self.store = store
        self._enqueue = enqueue
        self.period = period_seconds
        self._lapsed: dict[str, float] = {}  # job id -> when its lease was first seen lapsed

    async def sweep(self) -> list[str]:
        """One pass; the ids of the jobs it re-queued. Store errors go up (the next pass
        starts over)."""
        requeued: list[str] = []
        listed = await self.store.running_jobs()
        self._lapsed = {job_id: t for job_id, t in self._lapsed.items() if job_id in listed}
        for job_id in listed:
            if await self.store.held(job_id):
                self._lapsed.pop(job_id, None)
                continue
            job = await self.store.get(job_id)
            if job is None or settled(job):
                await self.store.unlist(job_id)
                self._lapsed.pop(job_id, None)
                continue
            since = self._lapsed.setdefault(job_id, time.monotonic())
            if time.monotonic() - since < self.period or not await self.store.unlist(job_id):
                continue
            self._lapsed.pop(job_id, None)
            try:
                await self._enqueue(job_id)
            except Exception:
                await self.store.relist(job_id)  # the next pass tries again
                raise
            log.warning(
                "job %s was left %s with no live run (its worker was lost, or gave up while "
                "Redis was away); queued again",
                job_id, job.status.value,
            )  # fmt: skip
            requeued.append(job_id)
        return requeued

    async def sweep_quietly(self) -> None:
        """A pass whose failures are logged, not raised: the sweep runs for the worker's life."""
        try:
            await self.sweep()
        except JobStoreUnavailableError as exc:
            log.info("sweep skipped: the job store did not answer (%s)", exc)
        except Exception:
            log.exception("sweep failed; the next one starts over")
