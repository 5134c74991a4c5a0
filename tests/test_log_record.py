"""The log API record of a finished job, and the label mapping's checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from app.envelope import ArizeMetadata
from app.job import Job, JobError, JobStatus, PushState
from app.log_record import LabelError, categorical, check_label, default_label, log_record
from coordinator.log_api import check_record
from tests.conftest import METADATA

FINISHED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def finished(status: JobStatus, result: Any = None, error: JobError | None = None) -> Job:
    return Job(
        job_id="job_1",
        run_id=METADATA["run_id"],
        status=status,
        submitted_at=FINISHED_AT,
        finished_at=FINISHED_AT,
        push=PushState(target="arize"),
        input={"goal": "x"},
        arize_metadata=ArizeMetadata.model_validate(METADATA),
        result=result,
        error=error,
    )


@pytest.mark.parametrize(
    ("job", "label"),
    [
        (finished(JobStatus.SUCCEEDED, {"a": 1}), categorical("succeeded", 1.0)),
        (finished(JobStatus.SUCCEEDED, 0.75), {"numeric": 0.75}),
        (finished(JobStatus.SUCCEEDED, True), categorical("succeeded", 1.0)),  # not a number
        (
            finished(JobStatus.FAILED, error=JobError(type="agent_timeout", message="m")),
            categorical("agent_timeout", 0.0),
        ),
    ],
)
def test_the_default_label(job: Job, label: dict[str, Any]) -> None:
    assert default_label(job) == label


@pytest.mark.parametrize(
    "label",
    [
        {"numeric": "0.5"},
        {"numeric": float("nan")},
        {"numeric": 1, "extra": 2},
        {"score_categorical": {"score_category": {"category": "a"}}},
        {"score_categorical": {"score_category": {"category": 1, "score": 1.0}}},
        "yes",
        None,
    ],
)
def test_labels_the_log_api_would_refuse_are_refused_here(label: object) -> None:
    with pytest.raises(LabelError, match=r"app\.log_record\.categorical"):
        check_label(label)


def test_records_pass_the_log_api_stand_ins_checks() -> None:
    for job in (
        finished(JobStatus.SUCCEEDED, {"answer": "x" * 20_000}),
        finished(JobStatus.FAILED, error=JobError(type="agent_error", message="boom")),
    ):
        record = log_record(job, space_key="s", model_id="m", label=default_label)
        check_record(record, now=FINISHED_AT.timestamp() + 60)
        assert record["prediction_id"] == METADATA["run_id"]
        features = record["prediction"]["features"]
        assert all(len(value) <= 10_100 for value in features.values())
