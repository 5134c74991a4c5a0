"""The Redis job queue (`AGENT_JOBS=redis`): dramatiq's Redis broker, one queue of job ids.

API replicas enqueue job ids; `agent-endpoint worker` processes take them and run the jobs
(`app/worker.py`). Both sides build the broker here, so they agree on its settings:

- Delivery is at least once. A worker takes a job id into its own "unacknowledged" set and
  acknowledges it only once the job has run; every process refreshes a heartbeat in Redis,
  and the ids held by a worker silent for `AGENT_JOB_HEARTBEAT_SECONDS` go back on the queue
  for another worker (`maintenance_chance` at its maximum: every broker call checks).
- No retries of a job that ran: a failed agent run is a recorded result, not a reason to run
  it again. Only a lost worker makes a job run again, and a store outage: a run rides one out
  (`app/job_runner.py`), and one that still ends on `JobStoreUnavailableError` (the outage
  outlasted the job's budget) is queued again, with backoff, instead of dead-lettered.
- The agent's time limit is the job runner's (`AGENT_JOB_TIMEOUT_SECONDS`); dramatiq's own
  limit is a backstop above it that also covers the push.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import dramatiq
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.middleware import AsyncIO, Retries, ShutdownNotifications, TimeLimit

from app.job_store import JobStoreUnavailableError
from app.settings import Settings

NAMESPACE = "agent-endpoint"
QUEUE = "agent-jobs"
ACTOR = "run_agent_job"
BACKSTOP_SECONDS = 300  # dramatiq's time limit is the job's plus its push plus this

STORE_OUTAGE_RETRIES = 20
MAX_BACKOFF_MS = 300_000

RunJob = Callable[[str], Awaitable[None]]


def store_outage(retries: int, exception: BaseException) -> bool:
    """Whether dramatiq queues the message again: only for a store that did not answer."""
    return isinstance(exception, JobStoreUnavailableError) and retries < STORE_OUTAGE_RETRIES


def build_broker(settings: Settings) -> RedisBroker:
    assert settings.redis_url is not None  # noqa: S101 - Settings.check_jobs_configured
    limit_ms = int(
        (settings.job_timeout_seconds + settings.push_budget_seconds + BACKSTOP_SECONDS) * 1000
    )
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=settings.redis_url.get_secret_value(),
        namespace=f"{NAMESPACE}:queue",
        heartbeat_timeout=int(settings.job_heartbeat_seconds * 1000),
        maintenance_chance=MAINTENANCE_SCALE,
        middleware=[
            TimeLimit(time_limit=limit_ms),
            ShutdownNotifications(),
            Retries(max_retries=0, retry_when=store_outage, max_backoff=MAX_BACKOFF_MS),
            AsyncIO(),
        ],
    )


def job_actor(broker: RedisBroker, run: RunJob | None = None) -> dramatiq.Actor[[str], None]:
    """The actor that runs a job by id: `run` in a worker; in an API process, only sent to."""

    async def run_agent_job(job_id: str) -> None:
        if run is None:
            raise RuntimeError("jobs run in `agent-endpoint worker` processes, not in the API")
        await run(job_id)

    declare = dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, broker=broker, max_retries=0)
    actor: dramatiq.Actor[[str], None] = declare(run_agent_job)
    return actor
