"""`agent-endpoint worker`: a process that runs async jobs from Redis (`AGENT_JOBS=redis`).

It loads the agent as the server does (`AGENT_ENTRYPOINT`, the same settings), then runs up
to `AGENT_JOB_CONCURRENCY` jobs at once: async agents on one event loop, sync agents in the
thread pool of `AGENT_SYNC_THREADS`. Start as many workers, on as many machines, as the load
needs; they share the queue. On SIGTERM or Ctrl-C a worker stops taking jobs and gives the
running ones `AGENT_JOB_GRACE_SECONDS` to finish; a job it could not finish (or any job of a
worker that died) runs again on another worker after `AGENT_JOB_HEARTBEAT_SECONDS`.
Beside the jobs, a thread sweeps for jobs left running with no live run (`app/job_sweep.py`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from types import FrameType

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import AsyncIO

from app.entrypoint import load_agent
from app.job_broker import QUEUE, build_broker, job_actor
from app.job_runner import JobRunner
from app.job_sweep import Sweeper
from app.jobs import job_agent_runner
from app.logs import configure_logging
from app.redaction import Redactor, mask_standard_streams
from app.redis_jobs import RedisJobStore, redis_store, unavailable_on_error
from app.result_push import ResultPusher, build_pusher
from app.settings import Settings, SettingsError
from app.tracing import Tracing

log = logging.getLogger("agent_endpoint")


def run_worker(settings: Settings) -> int:
    """Serve jobs until SIGTERM or SIGINT; returns the exit status."""
    if settings.jobs_mode != "redis":
        raise SettingsError(
            "agent-endpoint worker runs jobs from Redis: set REDIS_URL (and leave AGENT_JOBS "
            "unset or redis); with AGENT_JOBS=local the server runs jobs itself"
        )
    settings.check_tracing_configured()
    settings.check_jobs_configured()
    mask_standard_streams(settings.secret_values())  # the agent's print too
    configure_logging(settings)
    agent = load_agent(settings.entrypoint)
    redact = Redactor(settings.secret_values())
    tracing = Tracing.from_settings(settings, redact, agent.name)
    pusher = build_pusher(settings, redact)
    store = redis_store(settings)
    job_runner = JobRunner(
        settings,
        runner=job_agent_runner(agent, settings),
        tracing=tracing,
        store=store,
        pusher=pusher,
        redact=redact,
    )
    broker = build_broker(settings)
    broker.add_middleware(CloseOnJobLoop(store, pusher), after=AsyncIO)
    actor = job_actor(broker, job_runner.run)
    broker.emit_after("process_boot")  # what dramatiq's own CLI does; TimeLimit needs it
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=settings.job_concurrency)
    # Take no more jobs than can start: a job waiting in this worker's prefetch would wait
    # for a busy slot while another worker idles.
    worker.queue_prefetch = settings.job_concurrency

    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("worker: %s received, finishing running jobs", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    sweeping = threading.Event()
    sweep = threading.Thread(
        target=asyncio.run, args=(_sweep(settings, actor, sweeping),), name="job-sweep"
    )
    sweep.start()
    log.info(
        "worker ready: agent %s, %d job(s) at once, queue %s",
        agent.name, settings.job_concurrency, QUEUE,
    )  # fmt: skip
    stop.wait()
    sweeping.set()
    sweep.join()
    worker.stop(timeout=int(settings.job_grace_seconds * 1000))
    broker.close()
    tracing.close()
    log.info("worker stopped")
    return 0


class CloseOnJobLoop(dramatiq.Middleware):
    """Closes the jobs' Redis connections and the pusher's HTTP session on the event loop
    they were opened on, once the running jobs are over and before AsyncIO stops that loop
    (placed after it: dramatiq runs `after_*` hooks in reverse order, so this one first):
    left open, they are reported unclosed when the process exits."""

    def __init__(self, store: RedisJobStore, pusher: ResultPusher | None) -> None:
        self._store = store
        self._pusher = pusher

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop = get_event_loop_thread()
        if loop is not None:  # None only if the worker never booted
            loop.run_coroutine(self._close())

    async def _close(self) -> None:
        if self._pusher is not None:
            await self._pusher.close()
        await self._store.close()


async def _sweep(
    settings: Settings, actor: dramatiq.Actor[[str], None], stopping: threading.Event
) -> None:
    """The sweep (`app/job_sweep.py`) every AGENT_JOB_HEARTBEAT_SECONDS, on a loop and a
    store of its own, until `stopping` is set."""
    store = redis_store(settings)

    async def enqueue(job_id: str) -> None:
        with unavailable_on_error():
            await asyncio.to_thread(actor.send, job_id)  # redis-py's client blocks

    sweeper = Sweeper(store, enqueue, settings.job_heartbeat_seconds)
    try:
        while not stopping.is_set():
            await sweeper.sweep_quietly()
            await asyncio.to_thread(stopping.wait, sweeper.period)
    finally:
        await store.close()
