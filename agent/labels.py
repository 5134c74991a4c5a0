"""An optional label mapping for pushed results: `AGENT_PUSH_LABEL=agent.labels:by_tool_calls`.

When a job ends, its result is pushed to Arize's log API with a label. By default the label
says how the job went (`succeeded` 1.0, or the error type 0.0); a function like this one labels
by the agent's own output instead. Return `{"numeric": <float>}` or `categorical(category,
score)`; anything else fails the push with a message naming the fix.
"""

from __future__ import annotations

from app.job import Job, JobStatus
from app.log_record import Label, categorical


def by_tool_calls(job: Job) -> Label:
    """The example agent's answers: `planned` when it called its tools, `asked` when it had to
    ask which city, and the error type when the job failed."""
    if job.status is not JobStatus.SUCCEEDED:
        return categorical(job.error.type if job.error else job.status.value, 0.0)
    result = job.result if isinstance(job.result, dict) else {}
    if result.get("tool_calls"):
        return categorical("planned", 1.0)
    return categorical("asked", 0.5)
