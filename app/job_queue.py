"""The embedded job queue (`AGENT_JOBS=local`): jobs run as tasks of the serving process.

No extra service: `AGENT_JOB_CONCURRENCY` consumer tasks take job ids from a bounded queue of
`AGENT_JOB_QUEUE_SIZE`; past that, `POST /invoke/async` answers 503 with `Retry-After`. At
shutdown the queue stops taking jobs and the running and queued ones get
`AGENT_JOB_GRACE_SECONDS` to finish; what is left then is cancelled and lost (the README says
so: for jobs that must survive a restart, use Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("agent_endpoint")

RunJob = Callable[[str], Awaitable[None]]


class QueueFullError(Exception):
    """No room for another job; the caller should retry later."""


class LocalJobQueue:
    def __init__(self, run: RunJob, *, concurrency: int, max_queued: int) -> None:
        self._run = run
        self._concurrency = concurrency
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=max_queued)
        self._consumers: list[asyncio.Task[None]] = []
        self.closing = False
        self.running = 0

    def start(self) -> None:
        self._consumers = [
            asyncio.create_task(self._consume(), name=f"job-consumer-{n}")
            for n in range(self._concurrency)
        ]

    async def submit(self, job_id: str) -> None:
        if self.closing:
            raise QueueFullError("the server is shutting down")
        try:
            self._queue.put_nowait(job_id)
        except asyncio.QueueFull:
            raise QueueFullError(f"{self._queue.maxsize} jobs are already waiting") from None

    async def _consume(self) -> None:
        while True:
            job_id = await self._queue.get()
            self.running += 1
            try:
                await self._run(job_id)
            except Exception:
                log.exception("job %s failed outside the agent", job_id)
            finally:
                self.running -= 1
                self._queue.task_done()

    async def close(self, grace_seconds: float) -> bool:
        """Let queued and running jobs finish for up to `grace_seconds`; True if all did."""
        self.closing = True
        finished = True
        try:
            await asyncio.wait_for(self._queue.join(), grace_seconds)
        except TimeoutError:
            finished = False
            log.warning(
                "shutdown: %d job(s) still queued or running after AGENT_JOB_GRACE_SECONDS=%g "
                "are cancelled and lost (use REDIS_URL for jobs that survive a restart)",
                self._queue.qsize() + self.running, grace_seconds,
            )  # fmt: skip
        for task in self._consumers:
            task.cancel()
        for task in self._consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return finished
