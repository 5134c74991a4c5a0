"""The log API stand-in answers every row of Arize's response-code table, word for word."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coordinator.log_api import LogStore, create_log_api
from tests.live import free_port
from tests.processes import ROOT, clean_env

pytestmark = pytest.mark.anyio

API_KEY = "arize-api-key-1"
SPACE_KEY = "space-key-1"
NOW = 1_800_000_000.0


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "space_key": SPACE_KEY,
        "model_id": "trip-planner",
        "model_version": "v1",
        "prediction_id": "run_1",
        "prediction": {
            "timestamp": NOW - 60,
            "label": {"numeric": 0.93},
            "features": {"goal": "Tokyo", "turns": 4, "ok": True},
            "tags": {"experiment_id": "exp_1"},
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


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


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
        "feature of a list type",
        {"Authorization": API_KEY},
        record(prediction={"label": {"numeric": 1.0}, "features": {"tools": ["a", "b"]}}),
        400,
        "invalid feature type",
    ),
    (
        "feature null",
        {"Authorization": API_KEY},
        record(prediction={"label": {"numeric": 1.0}, "features": {"x": None}}),
        400,
        "invalid feature type",
    ),
    (
        "timestamp 91 days old",
        {"Authorization": API_KEY},
        record(prediction={"label": {"numeric": 1.0}, "timestamp": NOW - 91 * 86400}),
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
    "label",
    [
        {"numeric": "0.9"},
        {"numeric": True},
        {"score_categorical": {"score_category": {"category": "yes"}}},
        {"categorical": "yes"},
        {},
    ],
    ids=["numeric string", "numeric bool", "score missing", "unknown type", "empty"],
)
async def test_label_types(client: httpx.AsyncClient, label: dict[str, Any]) -> None:
    body = record(prediction={"label": label})
    response = await client.post("/v1/log", json=body, headers={"Authorization": API_KEY})
    assert response.status_code == 400


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
