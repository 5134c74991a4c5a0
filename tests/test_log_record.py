"""The log API record of a finished job, read back with Arize's own `Record` message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from app.envelope import ArizeMetadata
from app.job import Job, JobError, JobStatus, PushState
from app.log_record import (
    LabelError,
    categorical,
    check_label,
    default_label,
    log_record,
    rfc3339,
)
from coordinator.log_api import check_record
from tests.arize_schema import Message, parse_record
from tests.conftest import METADATA

FINISHED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FULL = ArizeMetadata.model_validate(METADATA)
# What a lenient envelope can carry: no experiment (so no model version) and no dataset.
LENIENT: dict[str, Any] = {**METADATA, "dataset_id": None, "experiment_id": None}
PARTIAL = ArizeMetadata.model_construct(**LENIENT)


def finished(
    status: JobStatus,
    result: Any = None,
    error: JobError | None = None,
    metadata: ArizeMetadata | None = FULL,
) -> Job:
    return Job(
        job_id="job_1",
        run_id=metadata.run_id if metadata else None,
        status=status,
        submitted_at=FINISHED_AT,
        finished_at=FINISHED_AT,
        push=PushState(target="arize"),
        input={"goal": "x"},
        arize_metadata=metadata,
        result=result,
        error=error,
    )


def cancelled() -> Job:
    """A status this code does not know (another change adds `cancelled`), without an error."""
    return finished(JobStatus.FAILED).model_copy(update={"status": "cancelled"})


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
        (cancelled(), categorical("cancelled", 0.0)),
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
        {"score_categorical": {"score_category": {"category": "a", "score": 1.0, "why": "x"}}},
        {"score_categorical": {"score_category": {"category": "a", "score": 1.0}}, "x": 1},
        "yes",
        None,
    ],
)
def test_labels_the_log_api_would_refuse_are_refused_here(label: object) -> None:
    with pytest.raises(LabelError, match=r"app\.log_record\.categorical"):
        check_label(label)


def test_a_categorical_label_is_rebuilt_with_a_float_score() -> None:
    label = {"score_categorical": {"score_category": {"category": "ok", "score": 1}}}
    assert check_label(label) == categorical("ok", 1.0)


RECORDS = {
    "success": finished(JobStatus.SUCCEEDED, {"answer": "x" * 20_000}),
    "numeric label": finished(JobStatus.SUCCEEDED, 0.75),
    "agent error": finished(JobStatus.FAILED, error=JobError(type="agent_error", message="boom")),
    "timeout": finished(JobStatus.FAILED, error=JobError(type="agent_timeout", message="late")),
    "cancelled error": finished(
        JobStatus.FAILED, error=JobError(type="cancelled", message="server stopped")
    ),
    "unknown status": cancelled(),
    "no experiment id": finished(JobStatus.SUCCEEDED, {"a": 1}, metadata=PARTIAL),
    "no metadata": finished(JobStatus.SUCCEEDED, {"a": 1}, metadata=None),
    "lone surrogate": finished(JobStatus.SUCCEEDED, json.loads('{"a": "\\ud800"}')),
}


@pytest.mark.parametrize("job", RECORDS.values(), ids=RECORDS.keys())
def test_every_pushed_record_is_an_arize_record(job: Job) -> None:
    """Arize's own parser (unknown fields refused) reads what we meant; the stand-in agrees."""
    record = log_record(job, space_key="s", model_id="m", label=default_label)
    parsed: Any = parse_record(record)
    assert isinstance(parsed, Message)
    check_record(record, now=FINISHED_AT.timestamp() + 60)
    prediction = parsed.prediction
    metadata = job.arize_metadata
    assert (parsed.space_key, parsed.model_id) == ("s", "m")
    assert parsed.prediction_id == (job.run_id or job.job_id)
    assert prediction.model_version == ((metadata.experiment_id if metadata else None) or "")
    assert prediction.timestamp.ToDatetime(tzinfo=UTC) == FINISHED_AT
    tags = {name: value.string for name, value in prediction.tags.items()}
    assert tags["job_id"] == "job_1"
    assert tags["job_status"] == str(record["prediction"]["tags"]["job_status"]["string"])
    assert {name: tags[name] for name in (metadata.run_ids() if metadata else {})} == (
        metadata.run_ids() if metadata else {}
    )
    features = {name: value.string for name, value in prediction.features.items()}
    assert all(len(value) <= 10_100 for value in features.values())
    assert prediction.label.WhichOneof("data") in {"numeric", "score_categorical"}


def test_the_record_says_what_happened() -> None:
    success, error, unknown = (
        log_record(job, space_key="s", model_id="m", label=default_label)
        for job in (RECORDS["success"], RECORDS["agent error"], RECORDS["unknown status"])
    )
    output = success["prediction"]["features"]["output"]["string"]
    assert output == '{"answer": "' + "x" * 9_988 + "… [cut: 20014 characters in all]"
    assert success["prediction"]["model_version"] == METADATA["experiment_id"]
    assert error["prediction"]["features"] == {
        "error_type": {"string": "agent_error"},
        "error_message": {"string": "boom"},
    }
    assert unknown["prediction"]["tags"]["job_status"] == {"string": "cancelled"}
    assert unknown["prediction"]["features"]["error_type"] == {"string": "cancelled"}
    no_experiment = log_record(
        RECORDS["no experiment id"], space_key="s", model_id="m", label=default_label
    )
    assert "model_version" not in no_experiment["prediction"]
    assert "experiment_id" not in no_experiment["prediction"]["tags"]


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (FINISHED_AT, "2026-11-23T12:00:00Z"),
        (datetime(2026, 11, 23, 12, 0, 0, 999_999), "2026-11-23T12:00:00Z"),  # naive: UTC
        (datetime.fromisoformat("2026-11-23T13:30:00+01:30"), "2026-11-23T12:00:00Z"),
    ],
)
def test_timestamps_are_rfc3339_in_utc(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text


@pytest.mark.parametrize(
    ("job", "label"),
    [
        (finished(JobStatus.SUCCEEDED, {"tool_calls": [{"name": "x"}]}), ("planned", 1.0)),
        (finished(JobStatus.SUCCEEDED, {"final_response": "Which city?"}), ("asked", 0.5)),
        (
            finished(JobStatus.FAILED, error=JobError(type="agent_timeout", message="m")),
            ("agent_timeout", 0.0),
        ),
    ],
)
def test_the_label_example_in_the_agent_room_makes_records_arize_accepts(
    job: Job, label: tuple[str, float]
) -> None:
    from agent.labels import by_tool_calls  # noqa: PLC0415

    assert by_tool_calls(job) == categorical(*label)
    record = log_record(job, space_key="s", model_id="m", label=by_tool_calls)
    parse_record(json.dumps(record))
