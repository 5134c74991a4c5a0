"""A finished job as a record of Arize's REST log API (`POST https://api.arize.com/v1/log`).

The record follows the JSON mapping of Arize's protobuf record:

    {"space_key", "model_id", "model_version", "prediction_id",
     "prediction": {"timestamp", "label", "features", "tags"}}

- `prediction_id` is the run id, so the record joins the experiment run it belongs to.
- `model_version` is the experiment id.
- `features` hold the agent's JSON output (`output`, cut at 10,000 characters) or the error.
- `tags` hold the run ids, the job id and the job's status.
- `label` comes from a small mapping you can replace (`AGENT_PUSH_LABEL=module:function`,
  called with the finished `Job`). The default labels the outcome: `score_categorical`
  `succeeded` with score 1.0, or the error type with score 0.0; an agent that returns a bare
  number gets it as a `numeric` label.

The log API accepts `numeric` (a double) and `score_categorical` (a category and a float
score) labels, features and tags that are strings, numbers or booleans, and timestamps from
now back to 90 days. `check_label` enforces the label part here, so a mapping that returns
something else fails in the worker's log with the fix, not as a 400 at Arize.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
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
    if job.status is JobStatus.SUCCEEDED and _is_number(result):
        return {"numeric": float(result)}
    if job.status is JobStatus.SUCCEEDED:
        return categorical("succeeded", 1.0)
    return categorical(job.error.type if job.error else "failed", 0.0)


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
        and isinstance(category, dict)
        and isinstance(category.get("category"), str)
        and _is_number(category.get("score"))
    ):
        return label
    raise LabelError(
        f"the label mapping returned {label!r}; return {{'numeric': <float>}} or "
        "app.log_record.categorical(<category>, <score>)"
    )


def log_record(job: Job, *, space_key: str, model_id: str, label: LabelMapping) -> dict[str, Any]:
    metadata = job.arize_metadata
    finished = job.finished_at or job.submitted_at
    tags: dict[str, Any] = {"job_id": job.job_id, "job_status": job.status.value}
    if metadata is not None:
        tags.update(metadata.run_ids())
    if job.status is JobStatus.SUCCEEDED:
        features = {"output": _cut(json.dumps(job.result, ensure_ascii=False))}
    else:
        error = job.error
        features = {
            "error_type": error.type if error else "failed",
            "error_message": _cut(error.message if error else ""),
        }
    record: dict[str, Any] = {
        "space_key": space_key,
        "model_id": model_id,
        "prediction_id": job.run_id or job.job_id,
        "prediction": {
            "timestamp": int(finished.timestamp()),
            "label": check_label(label(job)),
            "features": features,
            "tags": tags,
        },
    }
    if metadata is not None:
        record["model_version"] = metadata.experiment_id
    return record


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
