"""A finished job as a record of Arize's REST log API (`POST https://api.arize.com/v1/log`).

The record is Arize's protobuf `public.Record` in the protobuf JSON mapping, the form Arize's
own client posts (unknown fields are refused, so every name and type below is the proto's):

    {"space_key", "model_id", "prediction_id",
     "prediction": {"timestamp", "model_version", "label", "features", "tags"}}

- `prediction_id` is the run id (the job id without one), so the record joins its run.
- `prediction.model_version` is the experiment id, when the request carried one.
- `timestamp` is when the job finished, an RFC 3339 string (a number is refused).
- `features` hold the agent's JSON output (`output`, cut at 10,000 characters) or the error;
  `tags` hold the run ids, the job id and the job's status. Each value is a typed `Value`:
  `{"string": "..."}` (the proto has no bare strings or booleans there).
- `label` comes from a small mapping you can replace (`AGENT_PUSH_LABEL=module:function`,
  called with the finished `Job`). The default labels the outcome: `score_categorical`
  `succeeded` with score 1.0, or the error type (else the status) with score 0.0; an agent
  that returns a bare number gets it as a `numeric` label.

The log API accepts `numeric` (a double) and `score_categorical` (a category and a float
score) labels, and timestamps from now back to 90 days. `check_label` enforces the label part
here, so a mapping that returns something else fails in the worker's log with the fix, not as
a 400 at Arize.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from app.job import Job, JobStatus

MAX_FEATURE_CHARS = 10_000

Label = dict[str, Any]
LabelMapping = Callable[[Job], Label]


class LabelError(ValueError):
    """A label mapping returned something the log API would refuse."""


def default_label(job: Job) -> Label:
    """The outcome as a category with a score; a bare numeric output as a numeric label."""
    result = job.result
    if job.status == JobStatus.SUCCEEDED and _is_number(result):
        return {"numeric": float(result)}
    if job.status == JobStatus.SUCCEEDED:
        return categorical("succeeded", 1.0)
    return categorical(_error_type(job), 0.0)


def categorical(category: str, score: float) -> Label:
    return {"score_categorical": {"score_category": {"category": category, "score": score}}}


def check_label(label: object) -> Label:
    """The label, if the log API accepts its shape; LabelError naming the fix otherwise."""
    if isinstance(label, dict) and set(label) == {"numeric"} and _is_number(label["numeric"]):
        return {"numeric": float(label["numeric"])}
    inner = label.get("score_categorical") if isinstance(label, dict) else None
    category = inner.get("score_category") if isinstance(inner, dict) else None
    if (
        isinstance(label, dict)
        and len(label) == 1
        and isinstance(inner, dict)
        and len(inner) == 1
        and isinstance(category, dict)
        and set(category) == {"category", "score"}
        and isinstance(category["category"], str)
        and _is_number(category["score"])
    ):
        return categorical(_text(category["category"]), float(category["score"]))
    raise LabelError(
        f"the label mapping returned {label!r}; return {{'numeric': <float>}} or "
        "app.log_record.categorical(<category>, <score>)"
    )


def log_record(job: Job, *, space_key: str, model_id: str, label: LabelMapping) -> dict[str, Any]:
    metadata = job.arize_metadata
    tags = {"job_id": job.job_id, "job_status": _status(job)}
    if metadata is not None:
        tags.update(metadata.run_ids())
    if job.status == JobStatus.SUCCEEDED:
        features = {"output": _cut(json.dumps(job.result, ensure_ascii=False))}
    else:
        features = {
            "error_type": _error_type(job),
            "error_message": _cut(job.error.message if job.error else ""),
        }
    prediction: dict[str, Any] = {"timestamp": rfc3339(job.finished_at or job.submitted_at)}
    if metadata is not None and metadata.experiment_id:
        prediction["model_version"] = _text(metadata.experiment_id)
    prediction |= {
        "label": check_label(label(job)),
        "features": typed(features),
        "tags": typed(tags),
    }
    return {
        "space_key": space_key,
        "model_id": model_id,
        "prediction_id": _text(job.run_id or job.job_id),
        "prediction": prediction,
    }


def typed(values: dict[str, str]) -> dict[str, dict[str, str]]:
    """Strings as the proto's `Value`, which holds one typed field."""
    return {_text(name): {"string": _text(value)} for name, value in values.items()}


def rfc3339(moment: datetime) -> str:
    """`2026-11-23T12:00:00Z`, the JSON form of a protobuf Timestamp (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(text: str) -> str:
    """The text with lone surrogates (JSON can escape them: "\\ud800") spelled out as `\\ud800`:
    protobuf refuses a string that is not valid Unicode, and with it the whole record."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _status(job: Job) -> str:
    """The status as text, whatever its type: statuses this module does not know still push."""
    status: object = job.status
    return str(getattr(status, "value", status))


def _error_type(job: Job) -> str:
    """The error's type; without an error (a status such as `cancelled`), the status."""
    return job.error.type if job.error else _status(job)


def _cut(text: str) -> str:
    if len(text) <= MAX_FEATURE_CHARS:
        return text
    return f"{text[:MAX_FEATURE_CHARS]}… [cut: {len(text)} characters in all]"


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
