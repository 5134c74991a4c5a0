"""The log API stand-in answers every row of Arize's response-code table, word for word."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coordinator import record_schema
from coordinator.log_api import LogStore, create_log_api
from tests.arize_schema import FieldDescriptor, record_descriptor
from tests.arize_schema import verdict as arize_verdict
from tests.live import free_port
from tests.processes import ROOT, clean_env

pytestmark = pytest.mark.anyio

API_KEY = "arize-api-key-1"
SPACE_KEY = "space-key-1"
NOW = 1_800_000_000.0


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "space_key": SPACE_KEY,
        "model_id": "trip-planner",
        "prediction_id": "run_1",
        "prediction": {
            "timestamp": iso(NOW - 60),
            "model_version": "v1",
            "label": {"numeric": 0.93},
            "features": {"goal": {"string": "Tokyo"}, "turns": {"int": 4}, "cost": {"double": 1.5}},
            "tags": {"experiment_id": {"string": "exp_1"}},
        },
    }
    return {**base, **overrides}


@pytest.fixture
def store() -> LogStore:
    return LogStore(api_keys=frozenset({API_KEY}), space_keys=frozenset({SPACE_KEY}))


@pytest.fixture
async def client(store: LogStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_log_api(store, clock=lambda: NOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://log") as http:
        yield http


SEED_TABLE: list[tuple[str, dict[str, str], Any, int, str]] = [
    ("ok, numeric", {"Authorization": API_KEY}, record(), 200, "OK"),
    (
        "ok, score categorical actual",
        {"Authorization": API_KEY},
        record(
            prediction=None,
            actual={
                "label": {
                    "score_categorical": {"score_category": {"category": "yes", "score": 0.7}}
                }
            },
        ),
        200,
        "OK",
    ),
    ("missing authorization", {}, record(), 403, "must provide authorization header"),
    (
        "empty authorization",
        {"Authorization": " "},
        record(),
        403,
        "must provide authorization header",
    ),
    (
        "bad space key",
        {"Authorization": API_KEY},
        record(space_key="other"),
        403,
        "unable to validate authorization header",
    ),
    ("bad api key", {"Authorization": "nope"}, record(), 403, "invalid api-key"),
    (
        "neither prediction nor actual",
        {"Authorization": API_KEY},
        record(prediction=None),
        400,
        "log must include prediction or actual",
    ),
    (
        "feature without a type",
        {"Authorization": API_KEY},
        record(prediction={"label": {"numeric": 1.0}, "features": {"x": {}}}),
        400,
        "invalid feature type",
    ),
    (
        "tag whose typed value is null",
        {"Authorization": API_KEY},
        record(prediction={"label": {"numeric": 1.0}, "tags": {"x": {"string": None}}}),
        400,
        "invalid feature type",
    ),
    (
        "timestamp 91 days old",
        {"Authorization": API_KEY},
        record(prediction={"label": {"numeric": 1.0}, "timestamp": iso(NOW - 91 * 86400)}),
        400,
        "timestamp must range from now back to T-90 days",
    ),
    (
        "timestamp in the future",
        {"Authorization": API_KEY},
        record(prediction={"label": {"numeric": 1.0}, "timestamp": iso(NOW + 3600)}),
        400,
        "timestamp must range from now back to T-90 days",
    ),
]


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [pytest.param(h, b, s, m, id=name) for name, h, b, s, m in SEED_TABLE],
)
async def test_seed_response_table(
    client: httpx.AsyncClient,
    store: LogStore,
    headers: dict[str, str],
    body: Any,
    status: int,
    message: str,
) -> None:
    response = await client.post("/v1/log", json=body, headers=headers)
    assert (response.status_code, response.text) == (status, message)
    assert len(store.records) == (1 if status == 200 else 0)


async def test_header_that_cannot_be_read(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/log", json=record(), headers=[(b"Authorization", "clé".encode("latin-1"))]
    )
    assert (response.status_code, response.text) == (403, "cannot access request headers")


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (timedelta(days=90) - timedelta(seconds=1), 200),
        (timedelta(days=90), 200),
        (timedelta(days=90) + timedelta(seconds=1), 400),
    ],
    ids=["just inside", "exactly 90 days", "just outside"],
)
async def test_ninety_day_boundary(client: httpx.AsyncClient, age: timedelta, status: int) -> None:
    stamp = iso(NOW - age.total_seconds())
    body = record(prediction={"label": {"numeric": 0.5}, "timestamp": stamp})
    response = await client.post("/v1/log", json=body, headers={"Authorization": API_KEY})
    assert response.status_code == status


@pytest.mark.parametrize(
    ("label", "status"),
    [
        ({"numeric": "0.9"}, 200),  # the JSON mapping reads a double from a string
        ({"scoreCategorical": {"scoreCategory": {"category": "yes", "score": 0.5}}}, 200),
        ({"numeric": True}, 400),
        ({"numeric": "NaN"}, 400),
        ({"score_categorical": {"score_category": {"category": "yes"}}}, 400),
        ({"categorical": "yes"}, 400),
        ({"binary": True}, 400),
        ({}, 400),
    ],
    ids=[
        "numeric string",
        "json names",
        "numeric bool",
        "numeric NaN",
        "score missing",
        "categorical",
        "binary",
        "empty",
    ],
)
async def test_label_types(client: httpx.AsyncClient, label: dict[str, Any], status: int) -> None:
    body = record(prediction={"label": label})
    response = await client.post("/v1/log", json=body, headers={"Authorization": API_KEY})
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("body", "where", "fix"),
    [
        (
            record(model_version="v1"),
            "Record:",
            '"model_version" belongs under "prediction"',
        ),
        (
            record(prediction={"label": {"numeric": 1.0}, "features": {"goal": "Tokyo"}}),
            "Record.prediction.features[goal]:",
            '{"string": "Tokyo"}, {"int": 4} or {"double": 0.5}; got "Tokyo"',
        ),
        (
            record(prediction={"label": {"numeric": 1.0}, "features": {"n": {"int": 1.5}}}),
            "Record.prediction.features[n].int:",
            "expected a whole number",
        ),
        (
            record(prediction={"label": {"numeric": 1.0}, "timestamp": NOW}),
            "Record.prediction.timestamp:",
            'RFC 3339 string, like "2026-11-23T12:00:00Z"; got 1800000000.0',
        ),
        (
            record(actual={"label": {"numeric": 1.0}, "features": {}}),
            "Record.actual:",
            'an actual has no "features"',
        ),
        (
            record(prediction={"label": {"numeric": 1.0, "score_categorical": {}}}),
            "Record.prediction.label:",
            "holds one of binary, categorical, numeric, score_categorical: keep one",
        ),
    ],
    ids=["model_version", "untyped feature", "fractional int", "int timestamp", "actual", "oneof"],
)
async def test_a_record_off_the_schema_gets_a_400_that_says_where_and_why(
    client: httpx.AsyncClient, store: LogStore, body: dict[str, Any], where: str, fix: str
) -> None:
    response = await client.post("/v1/log", json=body, headers={"Authorization": API_KEY})
    assert response.status_code == 400
    assert response.text.startswith(f"invalid record: {where}"), response.text
    assert fix in response.text
    assert store.records == []


async def test_a_key_twice_in_one_object_is_refused(client: httpx.AsyncClient) -> None:
    text = json.dumps(record())[:-1] + ', "model_id": "other"}'
    response = await client.post(
        "/v1/log",
        content=text,
        headers={"Authorization": API_KEY, "Content-Type": "application/json"},
    )
    assert (response.status_code, response.text) == (
        400,
        'invalid record: body: the key "model_id" appears twice in one object; keep one',
    )


async def test_injected_internal_error_then_success(
    client: httpx.AsyncClient, store: LogStore
) -> None:
    store.fail_next = 1
    first = await client.post("/v1/log", json=record(), headers={"Authorization": API_KEY})
    second = await client.post("/v1/log", json=record(), headers={"Authorization": API_KEY})
    assert (first.status_code, first.text) == (500, "Internal service error, contact Arize")
    assert second.status_code == 200
    assert store.answers == [500, 200]


async def test_accepted_records_are_found_by_prediction_id(
    client: httpx.AsyncClient,
) -> None:
    for run_id in ("run_1", "run_2"):
        await client.post(
            "/v1/log", json=record(prediction_id=run_id), headers={"Authorization": API_KEY}
        )
    found = (await client.get("/v1/records", params={"prediction_id": "run_2"})).json()
    assert [r["prediction_id"] for r in found] == ["run_2"]


def test_log_api_command_serves_the_stand_in(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "log-api.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "coordinator",
                "log-api",
                "--port",
                str(port),
                "--api-key",
                API_KEY,
                "--space-key",
                SPACE_KEY,
            ],
            cwd=ROOT,
            env=clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/v1/log"
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, log.read_text()
            try:
                fresh = record(prediction={"label": {"numeric": 0.5}})
                response = httpx.post(url, json=fresh, headers={"Authorization": API_KEY})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        refused = httpx.post(url, json=record(), headers={"Authorization": "wrong"})
    finally:
        process.terminate()
        process.wait(10)
    assert (response.status_code, response.text) == (200, "OK")
    assert (refused.status_code, refused.text) == (403, "invalid api-key")


# The stand-in's schema against Arize's: the table field by field, then one corpus of records.

SCALAR_TYPES: dict[int, str] = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_INT64: "int64",
}


def _type_name(field: Any) -> str:
    if field.message_type is not None:
        return str(field.message_type.full_name).removeprefix("public.")
    return SCALAR_TYPES.get(field.type, f"unsupported type {field.type}")


def _spec(field: Any) -> str:
    """A field of the descriptor, written as record_schema.MESSAGES writes it."""
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
        kind = f"map {_type_name(value)}" if key.type == FieldDescriptor.TYPE_STRING else "?"
    elif field.is_repeated:
        kind = f"repeated {_type_name(field)}"
    else:
        kind = _type_name(field)
    oneof = field.containing_oneof
    return f"{kind} | {oneof.name}" if oneof is not None else kind


def _reachable(root: Any) -> dict[str, Any]:
    """The messages `root` reaches through its fields, by name in package `public`."""
    found: dict[str, Any] = {}
    todo = [root]
    while todo:
        message = todo.pop()
        name = message.full_name.removeprefix("public.")
        if name in found or message.full_name.startswith("google.protobuf."):
            continue
        if not message.GetOptions().map_entry:
            found[name] = message
        todo.extend(f.message_type for f in message.fields if f.message_type is not None)
    return found


def test_the_stand_ins_schema_is_arizes_record() -> None:
    """Every message reachable from Record, every field: name, JSON name, type, shape, oneof."""
    messages = _reachable(record_descriptor())
    assert {
        name: {field.name: _spec(field) for field in message.fields}
        for name, message in messages.items()
    } == record_schema.MESSAGES
    json_names = {
        (name, field.name): field.json_name
        for name, message in messages.items()
        for field in message.fields
    }
    assert json_names == {
        (name, field.name): field.json_name
        for name, fields in record_schema.FIELDS.items()
        for field in fields.values()
    }


def standin_verdict(text: str) -> str | None:
    try:
        record_schema.check(record_schema.loads(text))
    except ValueError as refusal:
        return str(refusal)
    return None


def _p(**prediction: Any) -> dict[str, Any]:
    """A record around a prediction (label numeric 1 unless given)."""
    return {"prediction_id": "r", "prediction": {"label": {"numeric": 1}, **prediction}}


def _feature(value: Any) -> dict[str, Any]:
    return _p(features={"f": value})


def _label(label: Any) -> dict[str, Any]:
    return {"prediction": {"label": label}}


def _ts(value: Any) -> dict[str, Any]:
    return _p(timestamp=value)


SERVICE_RECORD = {
    "space_key": "s",
    "model_id": "agent-endpoint",
    "prediction_id": "run_1",
    "prediction": {
        "timestamp": "2026-11-23T12:00:00Z",
        "model_version": "exp_1",
        "label": {"score_categorical": {"score_category": {"category": "succeeded", "score": 1.0}}},
        "features": {"output": {"string": '{"a": 1}'}},
        "tags": {"job_id": {"string": "job_1"}, "job_status": {"string": "succeeded"}},
    },
}

ACCEPTED: dict[str, Any] = {
    "the service's record": SERVICE_RECORD,
    "empty record": {},
    "minimal": _p(),
    "json names": {
        "spaceKey": "s",
        "modelId": "m",
        "predictionId": "r",
        "prediction": {
            "modelVersion": "v",
            "label": {"scoreCategorical": {"scoreCategory": {"category": "a", "score": 0.5}}},
        },
    },
    "both spellings of one field": {"space_key": "s", "spaceKey": "t"},
    "string feature": _feature({"string": "Tokyo"}),
    "int feature": _feature({"int": 4}),
    "int feature as a string": _feature({"int": "-12"}),
    "int feature as a whole float": _feature({"int": 4.0}),
    "int feature as exponent string": _feature({"int": "1e2"}),
    "int64 max": _feature({"int": str(2**63 - 1)}),
    "double feature": _feature({"double": 0.5}),
    "double feature as an int": _feature({"double": 3}),
    "double feature as a string": _feature({"double": "0.5"}),
    "double NaN quoted": _feature({"double": "NaN"}),
    "double -Infinity quoted": _feature({"double": "-Infinity"}),
    "multi value feature": _feature({"multi_value": {"values": ["a", "b"]}}),
    "embedding feature": _feature({"embedding": {"vector": [0.1, 2], "link_to_data": "u"}}),
    "token embedding": _feature({"embedding": {"raw_data": {"tokenArray": {"tokens": ["a"]}}}}),
    "dictionary feature": _feature({"dictionary": {"values": {"k": 0.5}}}),
    "empty value (the semantics refuse it)": _feature({}),
    "typed value null": _feature({"string": None}),
    "null fields": _p(features=None, tags=None, model_version=None),
    "null prediction id": {"prediction_id": None, "prediction": {"label": {"numeric": 1}}},
    "oneof member null beside another": _label({"numeric": 1, "binary": None}),
    "typed tags": _p(tags={"a": {"string": "x"}, "n": {"int": 1}}),
    "numeric label": _label({"numeric": 0.25}),
    "numeric label as a string": _label({"numeric": "0.25"}),
    "binary label": _label({"binary": False}),
    "categorical label": _label({"categorical": "yes"}),
    "score value": _label({"score_categorical": {"score_value": {"value": 0.3}}}),
    "category only": _label({"score_categorical": {"category": {"category": "a"}}}),
    "empty label": _label({}),
    "actual instead of prediction": {"actual": {"label": {"numeric": 1}, "tags": {}}},
    "prediction and actual": {
        "prediction_and_actual": {
            "prediction": {"label": {"numeric": 1}},
            "actual": {"label": {"numeric": 0}},
        }
    },
    "timestamp Z": _ts("2026-11-23T12:00:00Z"),
    "timestamp with nanoseconds and offset": _ts("2026-11-23T12:00:00.123456789+05:30"),
    "timestamp negative offset": _ts("2026-11-23T12:00:00.5-05:00"),
    "ranking": {
        "prediction": {
            "prediction_label": {
                "ranking": {"prediction_group_id": "g", "rank": "3", "prediction_score": 0.4}
            }
        }
    },
    "wrapper": {"is_generative_llm_record": True},
    "environment": {"environment_params": {"validation": {"batch_id": "b"}}},
    "document ids": _p(retrieved_document_ids=["a", "b"]),
    "feature importances": {"feature_importances": {"feature_importances": {"a": 0.5}}},
    "llm fields": _p(llm_fields={"llm_model_name": "m", "llm_params": {"t": {"double": 0.2}}}),
}

REFUSED: dict[str, Any] = {
    "model_version at top level": {**SERVICE_RECORD, "model_version": "exp_1"},
    "timestamp at top level": {**_p(), "timestamp": "2026-11-23T12:00:00Z"},
    "unknown field in prediction": _p(score=1),
    "features on an actual": {"actual": {"label": {"numeric": 1}, "features": {}}},
    "untyped string feature": _feature("Tokyo"),
    "untyped int feature": _feature(4),
    "untyped bool feature": _feature(True),
    "untyped string tag": _p(tags={"job_id": "job_1"}),
    "bool typed value": _feature({"bool": True}),
    "string typed value holding an int": _feature({"string": 4}),
    "int typed value holding letters": _feature({"int": "abc"}),
    "int typed value holding a fraction": _feature({"int": 1.5}),
    "int typed value holding a bool": _feature({"int": True}),
    "int typed value with a space": _feature({"int": " 3"}),
    "int64 overflow": _feature({"int": 2**63}),
    "double typed value holding letters": _feature({"double": "abc"}),
    "double typed value nan lowercase": _feature({"double": "nan"}),
    "double NaN literal": _feature({"double": float("nan")}),
    "double Infinity literal": _feature({"double": float("inf")}),
    "two types in one value": _feature({"string": "a", "int": 1}),
    "null feature": _feature(None),
    "feature list": _feature(["a", "b"]),
    "features as a list": _p(features=[{"string": "a"}]),
    "multi value of numbers": _feature({"multi_value": {"values": [1]}}),
    "multi value with null": _feature({"multi_value": {"values": [None]}}),
    "dictionary value null": _feature({"dictionary": {"values": {"k": None}}}),
    "dictionary value text": _feature({"dictionary": {"values": {"k": "x"}}}),
    "embedding vector not a list": _feature({"embedding": {"vector": "0.1"}}),
    "int timestamp": _ts(1_800_000_000),
    "float timestamp": _ts(1_800_000_000.5),
    "timestamp object": _ts({"seconds": 1_800_000_000}),
    "timestamp with a space": _ts("2026-11-23 12:00:00Z"),
    "timestamp without offset": _ts("2026-11-23T12:00:00"),
    "timestamp lowercase": _ts("2026-11-23t12:00:00z"),
    "timestamp no such day": _ts("2026-02-30T12:00:00Z"),
    "timestamp leap second": _ts("2026-12-31T23:59:60Z"),
    "timestamp ten fraction digits": _ts("2026-11-23T12:00:00.1234567891Z"),
    "timestamp offset without colon": _ts("2026-11-23T12:00:00+0530"),
    "timestamp trailing text": _ts("2026-11-23T12:00:00Zs"),
    "timestamp before year 1": _ts("0001-01-01T00:00:00+01:00"),
    "timestamp date only": _ts("2026-11-23"),
    "numeric label NaN literal": _label({"numeric": float("nan")}),
    "numeric label list": _label({"numeric": [1]}),
    "numeric and score_categorical": _label(
        {"numeric": 1, "score_categorical": {"score_category": {"category": "a", "score": 1}}}
    ),
    "one oneof in two spellings": _label({"score_categorical": {}, "scoreCategorical": {}}),
    "score as text": _label({"score_categorical": {"score_category": {"score": "x"}}}),
    "category as number": _label({"score_categorical": {"score_category": {"category": 1}}}),
    "score_category and category": _label(
        {"score_categorical": {"score_category": {}, "category": {"category": "a"}}}
    ),
    "label as text": _label("yes"),
    "binary label as text": _label({"binary": "true"}),
    "wrapper as text": {"is_generative_llm_record": "true"},
    "wrapper as object": {"is_generative_llm_record": {"value": True}},
    "two environments": {"environment_params": {"training": {}, "production": {}}},
    "rank fraction": {"prediction": {"prediction_label": {"ranking": {"rank": 1.5}}}},
    "prediction id number": {"prediction_id": 5},
    "model id bool": {"model_id": True},
    "prediction as a list of names": {"prediction": ["label"]},
    "prediction as a number": {"prediction": 5},
    "document ids not a list": _p(retrieved_document_ids="a"),
    "document ids with null": _p(retrieved_document_ids=[None]),
    "top level null": None,
    "top level number": 5,
    "lone surrogate": '{"prediction_id": "\\ud800"}',
    "lone surrogate in a map key": '{"prediction": {"tags": {"\\udc00": {"string": "x"}}}}',
    "a key twice": '{"prediction_id": "a", "prediction_id": "b"}',
    "not JSON": "{",
}


def _text(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body)


@pytest.mark.parametrize(
    ("text", "accepted"),
    [pytest.param(_text(body), True, id=name) for name, body in ACCEPTED.items()]
    + [pytest.param(_text(body), False, id=name) for name, body in REFUSED.items()],
)
def test_the_stand_in_and_protobuf_agree(text: str, accepted: bool) -> None:
    by_protobuf, by_stand_in = arize_verdict(text), standin_verdict(text)
    assert (by_protobuf is None, by_stand_in is None) == (accepted, accepted), (
        f"protobuf: {by_protobuf}; stand-in: {by_stand_in}"
    )


# Where protobuf's Python parser is laxer than the JSON mapping, the stand-in keeps to the
# mapping (record_schema's docstring): these protobuf accepts and the stand-in refuses.
LAXER_THAN_THE_MAPPING: dict[str, Any] = {
    "a list as a message": {"prediction": []},
    "an empty string as a message": {"prediction": ""},
    "a list as a typed value": _feature([]),
    "a list as the record": [],
    "a bool as a double": _label({"numeric": True}),
    "one-digit date and time fields": _ts("2026-1-2T3:4:5Z"),
    "an empty fraction": _ts("2026-11-23T12:00:00.Z"),
}


@pytest.mark.parametrize("body", LAXER_THAN_THE_MAPPING.values(), ids=LAXER_THAN_THE_MAPPING)
def test_the_stand_in_is_stricter_only_where_protobufs_parser_is_lax(body: Any) -> None:
    assert arize_verdict(_text(body)) is None
    assert standin_verdict(_text(body)) is not None
