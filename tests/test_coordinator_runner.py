"""The experiment runner against live servers on 127.0.0.1, in both of Arize's body shapes.

The end-to-end tests against the real app run in both shapes: the flat one needs the app to
accept the Agent Playground's top-level fields (issue 13).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.context import AgentContext
from app.main import create_app
from coordinator.runner import Experiment, run_experiment
from coordinator.template import Shape
from tests.agents import echo
from tests.conftest import KEY, make_settings
from tests.live import free_port, live_server
from tests.processes import ROOT

OPEN_SCHEMA = ROOT / "tests" / "open_schema.json"
ROWS = [{"input": f"Plan trip {i}", "turns": i} for i in range(5)]
TEMPLATE = {"goal": "{{input}}", "config": {"max_turns": "{{turns}}"}}  # wrapped
TEMPLATES: dict[Shape, dict[str, Any]] = {
    "wrapped": TEMPLATE,
    "flat": {"goal": "{{dataset.input}}", "config": {"max_turns": "{{dataset.turns}}"}},
}
SHAPES: list[Shape] = ["flat", "wrapped"]
METADATA_KEYS = {"dataset_id", "experiment_id", "run_id", "example_id", "space_id", "project_name"}


def fields_of(shape: Shape, body: dict[str, Any]) -> dict[str, Any]:
    """The hydrated template inside a body as sent in `shape`."""
    if shape == "wrapped":
        assert set(body) == {"input", "arize_metadata"}
        inner: dict[str, Any] = body["input"]
        return inner
    return {key: value for key, value in body.items() if key != "arize_metadata"}


def run(experiment: Experiment, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Run the experiment; the parsed results file and the number of failed runs."""
    output = io.StringIO()
    failed = asyncio.run(run_experiment(experiment, iter(rows), output))
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    return sorted(lines, key=lambda r: r["index"]), len(failed)


@pytest.fixture
def echo_url() -> Iterator[str]:
    app = create_app(make_settings(input_schema_file=OPEN_SCHEMA), agent=echo)
    with live_server(app) as url:
        yield url + "/invoke"


@pytest.mark.parametrize("shape", SHAPES)
def test_happy_path_results_file(echo_url: str, shape: Shape) -> None:
    experiment = Experiment(
        url=echo_url,
        template=TEMPLATES[shape],
        shape=shape,
        headers={"Authorization": f"Bearer {KEY}"},
        project_name="trips",
    )
    results, failed = run(experiment, ROWS)
    assert failed == 0
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    for row, result in zip(ROWS, results, strict=True):
        assert result["status"] == 200, result
        assert result["attempts"] == 1
        assert result["shape"] == shape
        assert result["error"] is None
        assert result["request"] == {"goal": row["input"], "config": {"max_turns": row["turns"]}}
        # The agent echoes what it received: the hydrated input and the run id we sent.
        assert result["response"] == {"input": result["request"], "run_id": result["run_id"]}
        assert re.fullmatch(r"[0-9a-f]{32}", result["trace_id"])
        assert result["example_id"] == f"ex_{result['index']}"
        assert result["latency_ms"] > 0
    assert len({r["run_id"] for r in results}) == 5
    assert KEY not in json.dumps(results)


@pytest.mark.parametrize("shape", SHAPES)
def test_headers_and_metadata_as_arize_sends_them(shape: Shape) -> None:
    seen: list[dict[str, Any]] = []

    async def capture(request: Request) -> Response:
        seen.append({"headers": dict(request.headers), "body": await request.json()})
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/invoke", capture, methods=["POST"])])
    with live_server(app) as url:
        experiment = Experiment(
            url=url + "/invoke",
            template=TEMPLATES[shape],
            shape=shape,
            headers={"X-API-Key": "k"},
            space_id="sp 1",
            project_name="my project",
        )
        results, _ = run(experiment, ROWS[:1])
    headers, body = seen[0]["headers"], seen[0]["body"]
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers["traceparent"])
    assert headers["traceparent"].split("-")[1] == results[0]["trace_id"]
    assert headers["baggage"] == "arize.space_id=sp%201,arize.project_name=my%20project"
    assert headers["x-api-key"] == "k"
    assert headers["content-type"] == "application/json"
    if shape == "flat":  # the Agent Playground: the fields at the top level, the ids beside
        assert set(body) == {"goal", "config", "arize_metadata"}
    else:  # the setup page: the fields under input
        assert set(body) == {"input", "arize_metadata"}
    assert fields_of(shape, body) == {"goal": "Plan trip 0", "config": {"max_turns": 0}}
    assert body["arize_metadata"] == {
        "dataset_id": experiment.dataset_id,
        "experiment_id": experiment.experiment_id,
        "run_id": results[0]["run_id"],
        "example_id": "ex_0",
        "space_id": "sp 1",
        "project_name": "my project",
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_wrong_body_shape_is_recorded_from_the_endpoints_diagnostic(shape: Shape) -> None:
    """A template the agent's input schema refuses: 422 recorded, not retried."""
    question = "{{dataset.input}}" if shape == "flat" else "{{input}}"
    with live_server(create_app(make_settings())) as url:
        experiment = Experiment(
            url=url + "/invoke",
            template={"question": question},
            shape=shape,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        results, failed = run(experiment, ROWS[:2])
    assert failed == 2
    for result in results:
        assert result["status"] == 422
        assert result["attempts"] == 1
        assert result["error"]["kind"] == "http"
        assert result["error"]["body"]["error"]["type"] == "input_schema_violation", result


@pytest.mark.parametrize("shape", SHAPES)
def test_auth_failure_is_recorded_without_retry(echo_url: str, shape: Shape) -> None:
    experiment = Experiment(
        url=echo_url, template=TEMPLATES[shape], shape=shape, headers={"X-API-Key": "wrong"}
    )
    results, failed = run(experiment, ROWS[:1])
    assert failed == 1
    assert (results[0]["status"], results[0]["attempts"]) == (401, 1)


@pytest.mark.parametrize("shape", SHAPES)
def test_timeout_is_recorded(shape: Shape) -> None:
    async def slow(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        await asyncio.sleep(5)
        return "late"

    app = create_app(make_settings(input_schema_file=OPEN_SCHEMA), agent=slow)
    with live_server(app) as url:
        experiment = Experiment(
            url=url + "/invoke",
            template=TEMPLATES[shape],
            shape=shape,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=0.3,
        )
        results, failed = run(experiment, ROWS[:1])
    assert failed == 1
    assert results[0]["error"]["kind"] == "timeout", results[0]
    assert results[0]["status"] is None
    assert results[0]["attempts"] == 1


def test_retries_on_503_then_succeeds() -> None:
    calls: list[int] = []

    async def flaky(request: Request) -> Response:
        calls.append(1)
        if len(calls) <= 2:
            return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "0"})
        return JSONResponse({"answer": 42})

    app = Starlette(routes=[Route("/invoke", flaky, methods=["POST"])])
    with live_server(app) as url:
        experiment = Experiment(url=url + "/invoke", template=TEMPLATES["flat"], backoff=0.01)
        results, failed = run(experiment, ROWS[:1])
    assert failed == 0
    assert (results[0]["status"], results[0]["attempts"]) == (200, 3)
    assert results[0]["response"] == {"answer": 42}
    assert len(calls) == 3


def test_connection_errors_are_retried_then_recorded() -> None:
    closed = f"http://127.0.0.1:{free_port()}/invoke"
    experiment = Experiment(url=closed, template=TEMPLATES["flat"], retries=2, backoff=0.01)
    results, failed = run(experiment, ROWS[:1])
    assert failed == 1
    assert results[0]["error"]["kind"] == "connection"
    assert results[0]["attempts"] == 3


@pytest.mark.parametrize("shape", SHAPES)
def test_concurrency_is_honoured_server_side(shape: Shape) -> None:
    lock = threading.Lock()
    in_flight = peak = 0

    async def counting(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        await asyncio.sleep(0.1)
        with lock:
            in_flight -= 1
        return "ok"

    app = create_app(make_settings(input_schema_file=OPEN_SCHEMA), agent=counting)
    rows = [{"input": str(i), "turns": i} for i in range(12)]
    with live_server(app) as url:
        experiment = Experiment(
            url=url + "/invoke",
            template=TEMPLATES[shape],
            shape=shape,
            headers={"Authorization": f"Bearer {KEY}"},
            concurrency=3,
        )
        results, failed = run(experiment, rows)
    assert failed == 0, results[0]
    assert len(results) == 12
    assert peak == 3


@pytest.mark.parametrize(
    ("shape", "placeholder"), [("flat", "dataset.turns"), ("wrapped", "turns")]
)
def test_row_missing_a_column_value_is_a_recorded_error(
    echo_url: str, shape: Shape, placeholder: str
) -> None:
    experiment = Experiment(
        url=echo_url, template=TEMPLATES[shape], shape=shape, headers={"X-API-Key": KEY}
    )
    results, failed = run(experiment, [{"input": "no turns here"}])
    assert failed == 1
    assert results[0]["error"] == {
        "kind": "template",
        "message": f"this row has no value for {{{{{placeholder}}}}}",
    }
    assert results[0]["attempts"] == 0


@pytest.mark.parametrize("shape", SHAPES)
def test_a_retry_keeps_the_runs_ids(shape: Shape) -> None:
    """The first attempt of every row meets a 503; the retry carries the same run id (and
    the same ids and fields), so the endpoint can tell a retry from a new run."""
    bodies: list[dict[str, Any]] = []
    lock = threading.Lock()

    async def busy_first(request: Request) -> Response:
        body = await request.json()
        with lock:
            bodies.append(body)
            first = (
                sum(
                    b["arize_metadata"]["run_id"] == body["arize_metadata"]["run_id"]
                    for b in bodies
                )
                == 1
            )
        if first:
            return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "0"})
        return JSONResponse({"run_id": body["arize_metadata"]["run_id"]})

    app = Starlette(routes=[Route("/invoke", busy_first, methods=["POST"])])
    with live_server(app) as url:
        experiment = Experiment(
            url=url + "/invoke", template=TEMPLATES[shape], shape=shape, backoff=0.01
        )
        results, failed = run(experiment, ROWS[:3])
    assert failed == 0
    assert [r["attempts"] for r in results] == [2, 2, 2]
    assert len(bodies) == 6
    for result in results:
        sent = [b for b in bodies if b["arize_metadata"]["run_id"] == result["run_id"]]
        assert len(sent) == 2
        assert sent[0] == sent[1]  # the same body: ids, example, fields
        assert set(sent[0]["arize_metadata"]) == METADATA_KEYS
        assert fields_of(shape, sent[0]) == result["request"]
        assert result["response"] == {"run_id": result["run_id"]}


def test_a_flat_template_that_is_not_an_object_is_a_recorded_error(echo_url: str) -> None:
    """The runner's own guard, for callers that skip check_template: nothing is sent."""
    experiment = Experiment(url=echo_url, template=["{{dataset.input}}"], shape="flat")
    results, failed = run(experiment, ROWS[:1])
    assert failed == 1
    assert results[0]["error"]["kind"] == "template"
    assert "must be a JSON object" in results[0]["error"]["message"]
    assert results[0]["attempts"] == 0
