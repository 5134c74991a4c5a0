"""The async pattern in the embedded mode: 200 (or 202) + job id, status, time limit, trace,
cancellation, result push.

Pushes go to the coordinator's stand-in of Arize's log API, served by a live uvicorn on
127.0.0.1, or to a live webhook receiver.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.cli import main
from app.job import Job
from app.main import create_app
from app.result_push import SIGNATURE_HEADER, signature
from coordinator.log_api import LogStore, create_log_api
from tests.conftest import AUTH, KEY, METADATA, OLD_KEY, client_for, envelope, make_settings
from tests.live import free_port, live_server
from tests.patience import scaled
from tests.processes import ROOT
from tests.servers import served

LOG_API_KEY = "log-api-key-0123456789abcdef"
SPACE_KEY = "space-key-0123456789"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FAST_PUSH = {"push_backoff_seconds": 0.01, "push_timeout_seconds": 5}
NINETY_ONE_DAYS = 91 * 24 * 3600


async def answer(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
    return {"answer": f"done: {input['goal']}"}


async def failing(input: dict[str, Any], ctx: Any) -> None:  # noqa: A002
    raise RuntimeError(f"tool broke with key {KEY}")


async def slow(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
    await asyncio.sleep(30)
    return "never"


@pytest.fixture
def log_api() -> Iterator[tuple[str, LogStore]]:
    store = LogStore(api_keys=frozenset({LOG_API_KEY}), space_keys=frozenset({SPACE_KEY}))
    with live_server(create_log_api(store)) as url:
        yield f"{url}/v1/log", store


def arize_push(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "arize_log_url": url,
        "arize_api_key": LOG_API_KEY,
        "arize_space_key": SPACE_KEY,
        "traces_exporter": ["none"],  # ARIZE_API_KEY alone would also mean span export
        **FAST_PUSH,
        **overrides,
    }


async def wait_finished(
    client: httpx.AsyncClient, status_url: str, limit: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + scaled(limit)
    while True:
        response = await client.get(status_url, headers=AUTH)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        finished = body["status"] in {"succeeded", "failed", "cancelled"}
        if finished and body["push"]["status"] != "pending":
            return body
        assert time.monotonic() < deadline, f"job still {body['status']}: {body}"
        await asyncio.sleep(0.02)


async def submit(client: httpx.AsyncClient, **headers: str) -> dict[str, Any]:
    response = await client.post("/invoke/async", json=envelope(), headers={**AUTH, **headers})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == body["status_url"]
    return body


@pytest.mark.anyio
async def test_200_then_the_status_shows_the_result(log_api: tuple[str, LogStore]) -> None:
    url, store = log_api
    app = create_app(make_settings(**arize_push(url)), agent=answer)
    async with client_for(app) as client:
        accepted = await submit(client)
        assert set(accepted) == {"job_id", "run_id", "status_url"}
        assert accepted["run_id"] == METADATA["run_id"]
        assert accepted["status_url"] == f"http://testserver/jobs/{accepted['job_id']}"
        done = await wait_finished(client, accepted["status_url"])
    assert done["status"] == "succeeded"
    assert done["result"] == {"answer": "done: Plan a 3-day trip to Tokyo"}
    assert done["error"] is None
    assert done["submitted_at"] <= done["started_at"] <= done["finished_at"]
    assert done["attempts"] == 1
    assert done["push"]["status"] == "pushed"
    (record,) = store.by_prediction_id(METADATA["run_id"])
    assert record["space_key"] == SPACE_KEY
    prediction = record["prediction"]
    assert prediction["model_version"] == METADATA["experiment_id"]
    assert json.loads(prediction["features"]["output"]["string"]) == done["result"]
    assert prediction["label"] == {
        "score_categorical": {"score_category": {"category": "succeeded", "score": 1.0}}
    }
    for name in ("dataset_id", "experiment_id", "run_id", "example_id", "space_id"):
        assert prediction["tags"][name] == {"string": METADATA[name]}
    assert prediction["tags"]["job_id"] == {"string": accepted["job_id"]}


@pytest.mark.anyio
async def test_the_status_moves_from_queued_to_running_to_succeeded() -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def gated(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        await release.wait()
        return "released"

    app = create_app(make_settings(job_concurrency=1), agent=gated)
    async with client_for(app) as client:
        first = await submit(client)
        second = await submit(client)  # waits behind the first: one job at a time
        await wait_status(client, first["status_url"], "running")
        for accepted in (first, second):
            response = await client.get(accepted["status_url"], headers=AUTH)
            seen.append(response.json()["status"])
        release.set()
        done = await wait_finished(client, second["status_url"])
    assert seen == ["running", "queued"]
    assert done["status"] == "succeeded"
    assert done["result"] == "released"
    assert done["push"]["status"] == "off"  # no push target configured


@pytest.mark.anyio
async def test_submission_is_checked_like_the_sync_route() -> None:
    app = create_app(make_settings(), agent=answer)
    async with client_for(app) as client:
        unauthenticated = await client.post("/invoke/async", json=envelope())
        misplaced = await client.post("/invoke/async", json={"question": "x"}, headers=AUTH)
        status_without_key = await client.get("/jobs/job_whatever")
        unknown = await client.get("/jobs/job_unknown", headers=AUTH)
    assert unauthenticated.status_code == 401
    assert misplaced.status_code == 422
    assert "input" in misplaced.json()["error"]["message"]
    assert status_without_key.status_code == 401
    assert unknown.status_code == 404
    assert "AGENT_JOB_RETENTION_SECONDS" in unknown.json()["error"]["message"]


@pytest.mark.anyio
async def test_a_job_past_its_time_limit_fails_and_is_pushed_as_a_failure(
    log_api: tuple[str, LogStore],
) -> None:
    url, store = log_api
    settings = make_settings(job_timeout_seconds=0.2, **arize_push(url))
    async with client_for(create_app(settings, agent=slow)) as client:
        done = await wait_finished(client, (await submit(client))["status_url"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "agent_timeout"
    assert "AGENT_JOB_TIMEOUT_SECONDS=0.2" in done["error"]["message"]
    (record,) = store.by_prediction_id(METADATA["run_id"])
    assert record["prediction"]["label"]["score_categorical"]["score_category"] == {
        "category": "agent_timeout",
        "score": 0.0,
    }


@pytest.mark.anyio
async def test_an_agent_error_is_recorded_and_pushed_without_the_key(
    log_api: tuple[str, LogStore],
) -> None:
    url, store = log_api
    async with client_for(create_app(make_settings(**arize_push(url)), agent=failing)) as client:
        done = await wait_finished(client, (await submit(client))["status_url"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "agent_error"
    assert "tool broke" in done["error"]["message"]
    assert KEY not in json.dumps(done)
    (record,) = store.by_prediction_id(METADATA["run_id"])
    assert record["prediction"]["features"]["error_type"] == {"string": "agent_error"}
    assert KEY not in json.dumps(record)


@pytest.mark.anyio
async def test_a_500_is_retried_until_the_push_passes(log_api: tuple[str, LogStore]) -> None:
    url, store = log_api
    store.fail_next = 2
    async with client_for(create_app(make_settings(**arize_push(url)), agent=answer)) as client:
        done = await wait_finished(client, (await submit(client))["status_url"])
    assert store.answers == [500, 500, 200]
    assert done["push"]["status"] == "pushed"
    assert done["push"]["attempts"] == 3
    assert len(store.by_prediction_id(METADATA["run_id"])) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({"arize_api_key": "wrong-key-0123456789abcdef"}, 403, "invalid api-key"),
        ({"arize_space_key": "wrong-space"}, 403, "unable to validate authorization header"),
    ],
)
async def test_a_403_is_not_retried_and_is_logged_once(
    log_api: tuple[str, LogStore],
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, Any],
    status: int,
    message: str,
) -> None:
    url, store = log_api
    settings = make_settings(**arize_push(url, **overrides))
    async with client_for(create_app(settings, agent=answer)) as client:
        done = await wait_finished(client, (await submit(client))["status_url"])
    assert store.answers == [status]
    assert done["push"] == {
        "target": "arize",
        "status": "refused",
        "attempts": 1,
        "last_error": f"{status} {message}",
        "pushed_at": None,
    }
    refusals = [r.getMessage() for r in caplog.records if "refused the result" in r.getMessage()]
    assert len(refusals) == 1
    assert message in refusals[0]
    assert LOG_API_KEY not in caplog.text


@pytest.mark.anyio
async def test_a_400_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    # The stand-in's clock 91 days ahead: the record's timestamp is out of the log API's range.
    store = LogStore(api_keys=frozenset({LOG_API_KEY}), space_keys=frozenset({SPACE_KEY}))
    log_api = create_log_api(store, clock=lambda: time.time() + NINETY_ONE_DAYS)
    with live_server(log_api) as url:
        settings = make_settings(**arize_push(f"{url}/v1/log"))
        async with client_for(create_app(settings, agent=answer)) as client:
            done = await wait_finished(client, (await submit(client))["status_url"])
    assert store.answers == [400]
    assert done["push"]["status"] == "refused"
    assert "timestamp must range from now back to T-90 days" in caplog.text


@pytest.mark.anyio
async def test_an_unreachable_log_api_is_retried_then_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/log"  # nothing listens there
    settings = make_settings(**arize_push(url, push_attempts=3))
    async with client_for(create_app(settings, agent=answer)) as client:
        done = await wait_finished(client, (await submit(client))["status_url"])
    assert done["status"] == "succeeded"  # the run itself went fine
    assert done["push"]["status"] == "failed"
    assert done["push"]["attempts"] == 3
    assert "ClientConnectorError" in done["push"]["last_error"]
    assert "after 3 attempts" in caplog.text


def not_a_label(job: Job) -> dict[str, Any]:
    return {"score": 0.5}  # neither numeric nor score_categorical


@pytest.mark.anyio
async def test_a_label_the_log_api_would_refuse_fails_the_push_with_the_fix(
    log_api: tuple[str, LogStore],
) -> None:
    url, store = log_api
    settings = make_settings(**arize_push(url, push_label="tests.test_jobs:not_a_label"))
    async with client_for(create_app(settings, agent=answer)) as client:
        done = await wait_finished(client, (await submit(client))["status_url"])
    assert store.answers == []  # never sent
    assert done["push"]["status"] == "failed"
    assert "{'numeric': <float>}" in done["push"]["last_error"]


def test_the_coordinator_gets_every_rows_result_through_the_log_api(tmp_path: Path) -> None:
    async def thinking(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
        await asyncio.sleep(0.2)
        return {"plan": f"plan for {input['goal']}"}

    log_port = free_port()
    settings = make_settings(
        **arize_push(f"http://127.0.0.1:{log_port}/v1/log", arize_space_key="space-1")
    )
    results = tmp_path / "results.jsonl"
    with live_server(create_app(settings, agent=thinking)) as base:
        code = main(
            [
                "coordinator", "run", "--url", f"{base}/invoke/async",
                "--dataset", str(ROOT / "coordinator" / "samples" / "trips.csv"),
                "--template", '{"goal": "{{dataset.question}}"}',
                "--header", f"Authorization: Bearer {KEY}",
                "--log-api-port", str(log_port), "--log-api-key", LOG_API_KEY,
                "--space-key", "space-1", "--push-wait", "10", "--results", str(results),
            ]
        )  # fmt: skip
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert code == 0
    assert len(lines) == 4
    for line in lines:
        assert line["status"] == 200
        assert line["response"]["run_id"] == line["run_id"]
        assert line["pushed"]["prediction_id"] == line["run_id"]
        output = json.loads(line["pushed"]["prediction"]["features"]["output"]["string"])
        assert output == {"plan": f"plan for {line['request']['goal']}"}


@pytest.mark.anyio
async def test_the_webhook_gets_the_signed_status_document() -> None:
    received: list[tuple[bytes, str]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers.get(SIGNATURE_HEADER, "")))
        return JSONResponse({"ok": True})

    secret = "webhook-secret-0123456789"
    with live_server(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        settings = make_settings(
            push_webhook_url=f"{url}/hook", push_webhook_secret=secret, **FAST_PUSH
        )
        async with client_for(create_app(settings, agent=answer)) as client:
            done = await wait_finished(client, (await submit(client))["status_url"])
    assert done["push"]["target"] == "webhook"
    assert done["push"]["status"] == "pushed"
    ((body, signed),) = received
    assert signed == signature(secret, body)
    document = json.loads(body)
    assert document["job_id"] == done["job_id"]
    assert document["status"] == "succeeded"
    assert document["result"] == done["result"]


@pytest.mark.anyio
async def test_a_job_run_again_after_its_push_does_not_push_twice(
    log_api: tuple[str, LogStore],
) -> None:
    url, store = log_api
    app = create_app(make_settings(**arize_push(url)), agent=answer)
    async with client_for(app) as client:
        accepted = await submit(client)
        await wait_finished(client, accepted["status_url"])
        local_jobs = app.state.jobs
        await local_jobs.job_runner.run(accepted["job_id"])  # a second delivery of the job
    assert store.answers == [200]


@pytest.mark.anyio
async def test_the_jobs_span_continues_the_request_trace(exported: InMemorySpanExporter) -> None:
    app = create_app(make_settings(), agent=answer)
    async with client_for(app) as client:
        accepted = await submit(client, traceparent=TRACEPARENT)
        await wait_finished(client, accepted["status_url"])
    spans = exported.get_finished_spans()
    submission = next(s for s in spans if s.name.endswith("(async)"))
    job = next(s for s in spans if s is not submission and s.attributes)
    assert submission.context is not None
    assert job.context is not None
    assert job.parent is not None
    assert f"{submission.context.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert job.context.trace_id == submission.context.trace_id
    assert job.parent.span_id == submission.context.span_id
    run_ids = json.loads(str((job.attributes or {})["metadata"]))
    assert run_ids["run_id"] == METADATA["run_id"]
    assert (job.attributes or {})["output.value"] == json.dumps(
        {"answer": "done: Plan a 3-day trip to Tokyo"}, separators=(",", ":")
    )


@pytest.mark.anyio
async def test_a_full_queue_answers_503_with_retry_after() -> None:
    release = asyncio.Event()

    async def gated(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        await release.wait()
        return "ok"

    app = create_app(make_settings(job_concurrency=1, job_queue_size=1), agent=gated)
    async with client_for(app) as client:
        first = await submit(client)
        await wait_status(client, first["status_url"], "running")  # so the queue is empty
        await submit(client)  # waits in the queue
        refused = await client.post("/invoke/async", json=envelope(), headers=AUTH)
        release.set()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert "AGENT_JOB_QUEUE_SIZE" in refused.json()["error"]["message"]


@pytest.mark.anyio
async def test_shutdown_waits_for_running_jobs_up_to_the_grace_period() -> None:
    finished: list[str] = []

    async def short(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        await asyncio.sleep(0.3)
        finished.append("short")
        return "finished in time"

    app = create_app(make_settings(job_grace_seconds=5), agent=short)
    async with client_for(app) as client:
        await submit(client)
        await submit(client)
    assert finished == ["short", "short"]  # the app stopped only after both ran


@pytest.mark.anyio
async def test_jobs_past_the_grace_period_are_cancelled_and_said_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = time.monotonic()
    async with client_for(create_app(make_settings(job_grace_seconds=0.2), agent=slow)) as client:
        await submit(client)
    assert time.monotonic() - started < scaled(5)
    assert "1 job(s) still queued or running after AGENT_JOB_GRACE_SECONDS=0.2" in caplog.text


def test_jobs_off_means_no_async_route() -> None:
    app = create_app(make_settings(jobs="off"), agent=answer)
    paths = {getattr(route, "path", "") for route in app.routes}
    assert "/invoke/async" not in paths
    assert "/jobs/{job_id}" not in paths


@pytest.mark.parametrize(("trusted", "scheme"), [("*", "https"), ("10.1.2.3", "http")])
def test_the_status_url_follows_the_load_balancers_headers_it_trusts(
    tmp_path: Path, trusted: str, scheme: str
) -> None:
    with served(tmp_path / "server.log", AGENT_FORWARDED_ALLOW_IPS=trusted) as url:
        response = httpx.post(
            f"{url}/invoke/async",
            json=envelope(),
            headers={**AUTH, "Host": "agent.example.com", "X-Forwarded-Proto": "https"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["status_url"].startswith(f"{scheme}://agent.example.com/jobs/job_")


def sleepy_sync(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
    time.sleep(float(input["seconds"]))
    return "slept"


@pytest.mark.anyio
async def test_a_job_waits_for_the_slot_a_timed_out_sync_agent_still_holds() -> None:
    settings = make_settings(
        job_concurrency=1,
        job_timeout_seconds=0.3,
        input_schema_file=ROOT / "tests" / "open_schema.json",  # takes `seconds` too
    )
    async with client_for(create_app(settings, agent=sleepy_sync)) as client:
        urls = []
        for seconds in (0.5, 0):  # the first outlives its limit; its thread runs 0.2 s more
            response = await client.post(
                "/invoke/async", json=envelope(seconds=seconds), headers=AUTH
            )
            urls.append(response.json()["status_url"])
        first, second = [await wait_finished(client, url) for url in urls]
    assert first["error"]["type"] == "agent_timeout"
    assert second["status"] == "succeeded", second  # waited for the thread, not refused
    assert second["result"] == "slept"


@pytest.mark.anyio
async def test_a_jobs_clock_counts_down_from_the_jobs_time_limit() -> None:
    async def clock(input: dict[str, Any], ctx: Any) -> float:  # noqa: A002
        left: float = ctx.time_left()
        return left

    settings = make_settings(timeout_seconds=110, job_timeout_seconds=3600)
    async with client_for(create_app(settings, agent=clock)) as client:
        done = await wait_finished(client, (await submit(client))["status_url"])
    assert 3000 < done["result"] <= 3600  # not the sync route's 110 s


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("prefer", "async_status", "status", "applied"),
    [
        (None, 200, 200, None),
        ("respond-async", 200, 202, "respond-async"),
        ('wait=5, Respond-Async; why="a, b"', 200, 202, "respond-async"),
        ('return=minimal; note="respond-async, please"', 200, 200, None),
        ("respond-asynchronously", 200, 200, None),
        (None, 202, 202, None),
    ],
)
async def test_the_answer_is_200_unless_202_is_asked_for(
    prefer: str | None, async_status: int, status: int, applied: str | None
) -> None:
    app = create_app(make_settings(async_status=async_status), agent=answer)
    headers = {"Prefer": prefer} if prefer is not None else {}
    async with client_for(app) as client:
        response = await client.post("/invoke/async", json=envelope(), headers={**AUTH, **headers})
        await wait_finished(client, response.json()["status_url"])
    assert response.status_code == status, response.text
    assert response.headers.get("preference-applied") == applied
    assert response.headers["vary"] == "Prefer"
    assert response.headers["location"] == response.json()["status_url"]
    assert set(response.json()) == {"job_id", "run_id", "status_url"}


def test_the_openapi_document_shows_both_answers_and_the_cancellation() -> None:
    document = create_app(make_settings(), agent=answer).openapi()
    submit_answers = document["paths"]["/invoke/async"]["post"]["responses"]
    cancel_answers = document["paths"]["/jobs/{job_id}"]["delete"]["responses"]
    assert {"200", "202"} <= set(submit_answers)
    assert "respond-async" in submit_answers["202"]["description"]
    assert {"200", "404", "409"} <= set(cancel_answers)


@pytest.mark.anyio
async def test_a_queued_and_a_running_job_are_cancelled_and_pushed_once(
    log_api: tuple[str, LogStore],
) -> None:
    url, store = log_api
    started: list[str] = []
    observed: list[bool] = []

    async def cancellable(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        started.append(input["goal"])
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            observed.append(ctx.cancelled.is_set())
            raise
        return "not cancelled"

    app = create_app(make_settings(job_concurrency=1, **arize_push(url)), agent=cancellable)
    async with client_for(app) as client:
        running = await submit(client)
        queued = await submit(client)
        await wait_status(client, running["status_url"], "running")
        unauthenticated = await client.delete(queued["status_url"])
        cancelled_queued = await client.delete(queued["status_url"], headers=AUTH)
        cancelled_running = await client.delete(running["status_url"], headers=AUTH)
        for job in (running, queued):
            await wait_finished(client, job["status_url"])
        again = await client.delete(running["status_url"], headers=AUTH)
        unknown = await client.delete("/jobs/job_unknown", headers=AUTH)
        for job in (running, queued):  # a second delivery of each job pushes nothing more
            await app.state.jobs.job_runner.run(job["job_id"])
        shown = [
            (await client.get(job["status_url"], headers=AUTH)).json() for job in (running, queued)
        ]
    assert unauthenticated.status_code == 401
    assert cancelled_queued.status_code == 200, cancelled_queued.text
    assert cancelled_queued.json()["status"] == "cancelled"
    assert cancelled_queued.json()["started_at"] is None
    assert cancelled_running.status_code == 200, cancelled_running.text
    assert cancelled_running.json()["status"] == "cancelled"
    assert started == ["Plan a 3-day trip to Tokyo"]  # the queued job never started
    assert observed == [True]  # the running agent saw ctx.cancelled, then its task cancelled
    for job in shown:
        assert job["status"] == "cancelled"
        assert job["error"]["type"] == "cancelled"
        assert job["result"] is None
        assert job["push"]["status"] == "pushed"
    assert "while it ran" in shown[0]["error"]["message"]
    assert "before it started" in shown[1]["error"]["message"]
    assert store.answers == [200, 200]  # one push each, none again
    for record in store.by_prediction_id(METADATA["run_id"]):
        assert record["prediction"]["label"]["score_categorical"]["score_category"] == {
            "category": "cancelled",
            "score": 0.0,
        }
    assert again.status_code == 409
    assert "already cancelled" in again.json()["error"]["message"]
    assert unknown.status_code == 404


@pytest.mark.anyio
async def test_a_finished_job_is_not_cancelled() -> None:
    async with client_for(create_app(make_settings(), agent=answer)) as client:
        accepted = await submit(client)
        await wait_finished(client, accepted["status_url"])
        refused = await client.delete(accepted["status_url"], headers=AUTH)
        after = await client.get(accepted["status_url"], headers=AUTH)
    assert refused.status_code == 409
    assert refused.json()["error"]["type"] == "job_finished"
    assert "already succeeded" in refused.json()["error"]["message"]
    assert after.json()["status"] == "succeeded"


async def wait_status(
    client: httpx.AsyncClient, status_url: str, status: str, limit: float = 10.0
) -> None:
    deadline = time.monotonic() + scaled(limit)
    while (await client.get(status_url, headers=AUTH)).json()["status"] != status:
        assert time.monotonic() < deadline, f"job never {status}"
        await asyncio.sleep(0.02)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://agent.example.com/", "https://agent.example.com/jobs/"),
        ("https://example.com/agent", "https://example.com/agent/jobs/"),
        (None, "http://attacker.example/jobs/"),  # without it, the Host header decides
    ],
)
async def test_the_status_url_is_built_on_the_public_url_when_one_is_set(
    public_url: str | None, expected: str
) -> None:
    app = create_app(make_settings(public_url=public_url), agent=answer)
    async with client_for(app) as client:
        response = await client.post(
            "/invoke/async", json=envelope(), headers={**AUTH, "Host": "attacker.example"}
        )
        await wait_finished(client, response.json()["status_url"].replace(expected, "/jobs/"))
    assert response.status_code == 200, response.text
    assert response.json()["status_url"].startswith(expected)
    assert response.headers["location"] == response.json()["status_url"]


def test_a_public_url_that_is_not_absolute_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="AGENT_PUBLIC_URL must be an absolute http"):
        make_settings(public_url="agent.example.com")


@pytest.mark.anyio
@pytest.mark.parametrize("access", ["any", "submitter"])
async def test_who_may_read_and_cancel_a_job_follows_agent_job_access(access: str) -> None:
    """Two keys configured (a rotation); the job is submitted with one, read with the other."""
    release = asyncio.Event()

    async def gated(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        await release.wait()
        return "released"

    settings = make_settings(api_keys=[KEY, OLD_KEY], job_access=access)
    app = create_app(settings, agent=gated)
    other = {"Authorization": f"Bearer {OLD_KEY}"}
    async with client_for(app) as client:
        accepted = await submit(client)
        stored = await app.state.jobs.jobs.store.get(accepted["job_id"])
        read_by_other = await client.get(accepted["status_url"], headers=other)
        cancelled_by_other = await client.delete(accepted["status_url"], headers=other)
        read_by_submitter = await client.get(accepted["status_url"], headers=AUTH)
        release.set()
        await wait_finished(client, accepted["status_url"])
    assert stored is not None
    assert stored.submitter is not None
    assert KEY not in stored.model_dump_json()  # a hash of the key, never the key
    assert "submitter" not in read_by_submitter.json()
    assert read_by_submitter.status_code == 200
    if access == "any":
        assert read_by_other.status_code == 200
        assert cancelled_by_other.status_code == 200
        assert cancelled_by_other.json()["status"] == "cancelled"
    else:
        for refused in (read_by_other, cancelled_by_other):
            assert refused.status_code == 404, refused.text
            assert "AGENT_JOB_ACCESS=submitter" in refused.json()["error"]["message"]
        assert read_by_submitter.json()["status"] in {"queued", "running"}  # not cancelled


@pytest.mark.anyio
async def test_the_embedded_store_keeps_finished_jobs_within_its_bounds() -> None:
    """Three finished jobs and 3,000 bytes at most: the two oldest of five are forgotten, the
    oldest kept loses its result (and says which setting dropped it); the running job, older
    than all of them, is never touched."""
    release = asyncio.Event()

    async def big(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
        if input["goal"] == "hold":
            await release.wait()
        return {"answer": "x" * 1000}

    settings = make_settings(job_concurrency=2, job_store_max_jobs=3, job_store_max_bytes=3000)
    async with client_for(create_app(settings, agent=big)) as client:
        held = await client.post("/invoke/async", json=envelope("hold"), headers=AUTH)
        urls = []
        for n in range(5):
            response = await client.post("/invoke/async", json=envelope(f"row {n}"), headers=AUTH)
            urls.append(response.json()["status_url"])
            await wait_finished(client, urls[-1])
        views = [await client.get(url, headers=AUTH) for url in urls]
        running = await client.get(held.json()["status_url"], headers=AUTH)
        release.set()
    assert [view.status_code for view in views] == [404, 404, 200, 200, 200]
    assert "AGENT_JOB_STORE_MAX_JOBS=3" in views[0].json()["error"]["message"]
    dropped, *kept = (view.json() for view in views[2:])
    assert dropped["status"] == "succeeded"
    assert dropped["push"]["status"] == "off"
    assert dropped["result"] is None
    assert dropped["result_dropped"] is True
    assert "AGENT_JOB_STORE_MAX_BYTES=3000" in dropped["note"]
    for job in kept:
        assert job["result"] == {"answer": "x" * 1000}
        assert job["result_dropped"] is False
    assert running.status_code == 200
    assert running.json()["status"] == "running"
