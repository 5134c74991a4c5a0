"""Running the agent within the limits: concurrency slots, time limit, thread pool, disconnects.

- Async agents run on the event loop; sync agents in a dedicated thread pool of
  AGENT_SYNC_THREADS threads (the stock pool of 40 would queue Arize's parallel rows).
- At most AGENT_MAX_CONCURRENCY runs are in flight; past that a request waits up to
  AGENT_QUEUE_WAIT_SECONDS for a slot, then gets 429 with `Retry-After`.
- A run past AGENT_TIMEOUT_SECONDS is cancelled and answered with 504 at the limit, whatever
  the agent does: an async agent runs in a task of its own, so one that swallows its
  cancellation cannot hold the answer back. A sync agent's thread cannot be killed:
  `ctx.cancelled` is set and its slot stays taken until the thread returns, so the
  concurrency limit keeps counting work that still uses the machine; such runs are `overdue`,
  and `/readyz` reports `busy` while no slot is free.
- A caller that disconnects cancels its run the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from starlette.types import Message

from app.context import AgentContext
from app.entrypoint import Agent
from app.errors import ApiError
from app.settings import Settings

log = logging.getLogger("agent_endpoint")

WATCH_DELAY = 0.05  # seconds before a run starts watching for the client going away
CANCEL_GRACE_SECONDS = 0.1  # how long a timed-out async agent may take to unwind

Receive = Callable[[], Awaitable[Message]]


class ClientDisconnectedError(Exception):
    """The caller went away; its agent run was cancelled."""


class AgentRunner:
    def __init__(
        self,
        agent: Agent,
        settings: Settings,
        *,
        timeout: float | None = None,
        capacity: int | None = None,
        queue_wait: float | None = None,
        timeout_variable: str = "AGENT_TIMEOUT_SECONDS",
    ) -> None:
        """The limits come from the settings of `POST /invoke`; jobs pass their own."""
        self.agent = agent
        self.timeout = timeout if timeout is not None else settings.timeout_seconds
        self.capacity = capacity if capacity is not None else settings.max_concurrency
        self._timeout_variable = timeout_variable
        self.queue_wait = queue_wait if queue_wait is not None else settings.queue_wait_seconds
        self.in_flight = 0
        self.overdue = 0  # runs past their limit (or cancelled) that have not stopped yet
        self.draining = False
        self._slots = asyncio.Semaphore(self.capacity)
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(
            max_workers=settings.sync_threads, thread_name_prefix="agent"
        )

    async def run(
        self,
        payload: dict[str, Any],
        ctx: AgentContext,
        receive: Receive | None = None,
    ) -> Any:
        """Run the agent once; raises ApiError (429/503/504) or ClientDisconnectedError.

        The agent runs in the caller's own task; with `receive`, a small watcher task cancels
        that task if the ASGI server reports that the client went away.
        """
        await self._acquire(ctx.run_id)
        slot = _Slot(self._release)
        watch = _DisconnectWatch(receive, ctx) if receive is not None else None
        try:
            return await self._run_with_deadline(payload, ctx, slot)
        except asyncio.CancelledError:
            if watch is not None and watch.fired():
                watch.task.uncancel()  # our own cancellation: report it, do not propagate it
                ctx.logger.info("client disconnected; agent run cancelled")
                raise ClientDisconnectedError from None
            ctx.cancelled.set()
            raise
        finally:
            if watch is not None:
                watch.stop()
            slot.drop()

    async def _run_with_deadline(
        self, payload: dict[str, Any], ctx: AgentContext, slot: _Slot
    ) -> Any:
        if self.agent.is_async:
            return await self._run_async(payload, ctx, slot)
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                return await self._run_sync(payload, ctx, slot)
        except TimeoutError:
            if not deadline.expired():
                raise  # the agent's own TimeoutError: reported as an agent error
            raise self._timed_out(ctx) from None

    async def _run_async(self, payload: dict[str, Any], ctx: AgentContext, slot: _Slot) -> Any:
        """The agent in a task of its own, so the caller gets its 504 at the limit even from an
        agent that swallows its cancellation; the slot stays taken until that task ends."""
        task: asyncio.Future[Any] = asyncio.ensure_future(self.agent.function(payload, ctx))
        slot.hold()

        def on_task_done(done: asyncio.Future[Any]) -> None:
            _consume(done)
            slot.drop()

        task.add_done_callback(on_task_done)
        try:
            await asyncio.wait((task,), timeout=self.timeout)
        except asyncio.CancelledError:  # the caller went away, or the server stops
            ctx.cancelled.set()
            task.cancel()
            self._mark_overdue(task)
            raise
        if task.done():
            return task.result()
        ctx.cancelled.set()
        task.cancel()
        # A cooperative agent unwinds at once and gives its slot back before the answer; one
        # that swallows its cancellation gets no more than this.
        await asyncio.wait((task,), timeout=CANCEL_GRACE_SECONDS)
        self._mark_overdue(task)
        raise self._timed_out(ctx)

    def _mark_overdue(self, run: asyncio.Future[Any] | Future[Any]) -> None:
        """A run past its limit that has not stopped yet: counted until it does (/readyz)."""
        if run.done():
            return
        self.overdue += 1
        loop = asyncio.get_running_loop()

        def finished(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the process is exiting
                loop.call_soon_threadsafe(self._overdue_done)

        run.add_done_callback(finished)

    def _overdue_done(self) -> None:
        self.overdue -= 1

    def _timed_out(self, ctx: AgentContext) -> ApiError:
        ctx.cancelled.set()
        advice = (
            "raise the setting (and Arize's request timeout) or use the async pattern "
            "for minutes-long agents (POST /invoke/async)"
            if self._timeout_variable == "AGENT_TIMEOUT_SECONDS"
            else "raise the setting if the agent needs longer"
        )
        return ApiError(
            504,
            "agent_timeout",
            f"the agent ran longer than {self._timeout_variable}={self.timeout:g} and was "
            f"cancelled; {advice}",
            run_id=ctx.run_id,
        )

    async def _run_sync(self, payload: dict[str, Any], ctx: AgentContext, slot: _Slot) -> Any:
        loop = asyncio.get_running_loop()
        call = contextvars.copy_context().run
        try:
            future: Future[Any] = self._executor.submit(call, self.agent.function, payload, ctx)
        except RuntimeError:  # the pool is shut down
            raise ApiError(
                503, "shutting_down", "the server is shutting down; retry", run_id=ctx.run_id
            ) from None
        slot.hold()

        def on_thread_done(_: Future[Any]) -> None:
            # A closed loop means the process is exiting anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(slot.drop)

        future.add_done_callback(on_thread_done)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            self._mark_overdue(future)  # a thread cannot be stopped: it runs on, counted
            raise

    async def _acquire(self, run_id: str | None) -> None:
        if self.draining:
            raise ApiError(
                503,
                "shutting_down",
                "the server is shutting down; retry on another replica",
                headers={"Retry-After": "1"},
                run_id=run_id,
            )
        # asyncio.Semaphore is first come, first served (Python 3.11.1+): a newcomer never
        # takes a slot released for a run already waiting, and a waiter cancelled just as a
        # slot reached it passes the slot on.
        if self._slots.locked() and self.queue_wait <= 0:
            raise self._busy(run_id)
        try:
            async with asyncio.timeout(self.queue_wait if self._slots.locked() else None):
                await self._slots.acquire()
        except TimeoutError:
            raise self._busy(run_id) from None
        self.in_flight += 1
        self._idle.clear()

    def _release(self) -> None:
        self._slots.release()
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def _busy(self, run_id: str | None) -> ApiError:
        return ApiError(
            429,
            "too_many_requests",
            f"{self.capacity} agent runs are in flight (AGENT_MAX_CONCURRENCY); retry after "
            "the Retry-After delay, or lower the experiment's concurrency in Arize",
            headers={"Retry-After": "1"},
            run_id=run_id,
        )

    async def drain(self, grace_seconds: float) -> bool:
        """Refuse new runs and wait for the in-flight ones; True when all finished in time."""
        self.draining = True
        try:
            async with asyncio.timeout(grace_seconds):
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "shutdown: %d agent runs still in flight after the grace period", self.in_flight
            )
            return False
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a run nobody awaits any more, so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


class _DisconnectWatch:
    """Cancels the request's task when the ASGI server reports that the client went away.

    Most runs finish in milliseconds, so the watcher task only starts after WATCH_DELAY: a
    disconnect before that is still seen (the server keeps the message for `receive()`), and
    quick runs skip a task per request.
    """

    def __init__(self, receive: Receive, ctx: AgentContext) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - called from a request's coroutine
        self.task: asyncio.Task[Any] = task
        self._receive = receive
        self._ctx = ctx
        self._watcher: asyncio.Task[None] | None = None
        self._start = asyncio.get_running_loop().call_later(WATCH_DELAY, self._begin)

    def _begin(self) -> None:
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._ctx.cancelled.set()
                self.task.cancel()
                return

    def fired(self) -> bool:
        watcher = self._watcher
        return watcher is not None and watcher.done() and not watcher.cancelled()

    def stop(self) -> None:
        self._start.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


class _Slot:
    """One concurrency slot, held by the run's task and, for sync agents, by its thread.

    The slot is given back when the last holder lets go, so a thread that outlives a
    timed-out request keeps counting against AGENT_MAX_CONCURRENCY. Only touched on the loop.
    """

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self._holders = 1

    def hold(self) -> None:
        self._holders += 1

    def drop(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            self._release()
