"""One long-running agent run: what `POST /invoke/async` accepted, and what became of it.

A job carries everything the worker needs to run the agent as the request would have: the
envelope's `input` and `arize_metadata` (which hold the run ids and the Arize space and
project), and the trace context of the request span (`traceparent`, `tracestate`, `baggage`),
so the job's span continues the request's trace and is routed to the same space.

`GET /jobs/{job_id}` shows a job's `JobView`: status, timestamps, the result or the error, and
how the push of the result went; `DELETE /jobs/{job_id}` cancels an unfinished job.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.envelope import ArizeMetadata


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by `DELETE /jobs/{job_id}` before it finished


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobError(BaseModel):
    type: str = Field(
        description="agent_error, agent_timeout, invalid_agent_output, cancelled, ..."
    )
    message: str


class PushState(BaseModel):
    """The push of the result when the job ends (`AGENT_PUSH`)."""

    target: Literal["arize", "webhook", "none"]
    status: Literal["pending", "pushed", "refused", "failed", "off"] = "pending"
    attempts: int = 0
    last_error: str | None = None
    pushed_at: datetime | None = None


class JobView(BaseModel):
    """What `GET /jobs/{job_id}` answers."""

    job_id: str
    run_id: str | None
    status: JobStatus
    submitted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = Field(0, description="Runs started: more than 1 after a worker was lost.")
    result: Any = Field(None, description="The agent's JSON output, once succeeded.")
    error: JobError | None = None
    push: PushState
    result_dropped: bool = Field(
        False,
        description="The result is no longer kept (the embedded store's bound; see `note`); "
        "it was pushed as usual.",
    )
    note: str | None = Field(None, description="Why something is missing from this status.")


class Job(JobView):
    """A job as stored: its view plus what the worker needs to run it."""

    input: dict[str, Any]
    arize_metadata: ArizeMetadata | None = None
    trace: dict[str, str] = Field(default_factory=dict)  # traceparent, tracestate, baggage
    # A hash of the API key that submitted the job (`app.auth.fingerprint`), for
    # AGENT_JOB_ACCESS=submitter; None with auth off. Never shown, never the key.
    submitter: str | None = None

    def view(self) -> JobView:
        return JobView.model_validate(self.model_dump(include=set(JobView.model_fields)))


def new_job_id() -> str:
    return "job_" + secrets.token_hex(12)


def now() -> datetime:
    return datetime.now(UTC)
