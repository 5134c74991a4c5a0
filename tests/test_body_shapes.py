"""Both body shapes Arize sends today, read by one rule (app/envelope.py), through the real app.

Flat is the Agent Playground's (fields at the top level, `arize_metadata` beside them,
`{{dataset.column}}` placeholders); wrapped is the setup page's (`{"input": {...}}`,
`{{column}}` placeholders). The agent's `input` and `ctx.config` mean the same in both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.envelope import find_placeholders, read_metadata, whole_placeholder
from app.main import create_app
from tests.conftest import AUTH, METADATA, AppFactory, client_for, make_settings
from tests.live import live_server

pytestmark = pytest.mark.anyio

SCHEMAS: dict[str, dict[str, Any] | None] = {
    "default": None,  # app/input_schema.json: goal required, config, nothing else
    "open": {"type": "object"},
    "input string": {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "required": ["input"],
    },
    "input object": {
        "type": "object",
        "properties": {"input": {"type": "object"}, "mode": {"type": "string"}},
        "required": ["input"],
    },
}

TRIP = {"goal": "Plan a 3-day trip to Tokyo", "config": {"model": "claude-sonnet-4-5"}}

# (schema, AGENT_BODY_SHAPE, body without arize_metadata, reading, the agent's input)
READINGS = [
    pytest.param("default", "auto", {"input": TRIP}, "wrapped", TRIP, id="wrapped"),
    pytest.param("default", "auto", TRIP, "flat", TRIP, id="flat"),
    pytest.param(
        "input string",
        "auto",
        {"input": "Plan a trip"},
        "flat",
        {"input": "Plan a trip"},
        id="flat field named input holding a string",
    ),
    pytest.param(
        "open",
        "auto",
        {"input": "Plan a trip"},
        "flat",
        {"input": "Plan a trip"},
        id="a string input is flat whatever the schema",
    ),
    pytest.param(
        "open",
        "auto",
        {"input": {"q": 1}, "mode": "x"},
        "flat",
        {"input": {"q": 1}, "mode": "x"},
        id="flat object input beside other fields",
    ),
    pytest.param(
        "input object",
        "auto",
        {"input": {"q": 1}},
        "flat",
        {"input": {"q": 1}},
        id="both fit, the schema declares input",
    ),
    pytest.param(
        "open", "auto", {"input": {"q": 1}}, "wrapped", {"q": 1}, id="both fit, open schema"
    ),
    pytest.param(
        "default",
        "auto",
        {"input": {"goal": "x"}, "extra": 1},
        "wrapped",
        {"goal": "x"},
        id="only the wrapped reading fits the schema",
    ),
    pytest.param(
        "input object",
        "auto",
        {"input": {"goal": "x"}, "mode": "fast"},
        "flat",
        {"input": {"goal": "x"}, "mode": "fast"},
        id="only the flat reading fits the schema",
    ),
    pytest.param(
        "open",
        "flat",
        {"input": {"goal": "x"}},
        "flat",
        {"input": {"goal": "x"}},
        id="AGENT_BODY_SHAPE=flat",
    ),
    pytest.param(
        "open",
        "wrapped",
        {"input": {"goal": "x"}, "mode": "y"},
        "wrapped",
        {"goal": "x"},
        id="AGENT_BODY_SHAPE=wrapped",
    ),
]


async def seen_by_agent(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
    return {"input": input, "config": ctx.config, "run_id": ctx.run_id}


def schema_file(tmp_path: Path, name: str) -> dict[str, Any]:
    schema = SCHEMAS[name]
    if schema is None:
        return {}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    return {"input_schema_file": path, "presets_file": None}


@pytest.mark.parametrize(("schema", "setting", "body", "shape", "agent_input"), READINGS)
async def test_each_body_is_read_by_the_rule(
    build_app: AppFactory,
    exported: InMemorySpanExporter,
    tmp_path: Path,
    schema: str,
    setting: str,
    body: dict[str, Any],
    shape: str,
    agent_input: dict[str, Any],
) -> None:
    app = build_app(seen_by_agent, body_shape=setting, **schema_file(tmp_path, schema))
    async with client_for(app) as client:
        response = await client.post(
            "/invoke", json={**body, "arize_metadata": METADATA}, headers=AUTH
        )
    assert response.status_code == 200, response.text
    config = agent_input.get("config")
    assert response.json() == {
        "input": agent_input,
        "config": config if isinstance(config, dict) else {},
        "run_id": "run_1",
    }
    (span,) = exported.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["agent_endpoint.body_shape"] == shape


async def test_a_fixed_wrapped_shape_refuses_a_flat_body_naming_the_setting(
    build_app: AppFactory,
) -> None:
    async with client_for(build_app(body_shape="wrapped")) as client:
        response = await client.post(
            "/invoke", json={**TRIP, "arize_metadata": METADATA}, headers=AUTH
        )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "body_not_wrapped"
    assert "top-level keys: config, goal" in error["message"]
    assert "AGENT_BODY_SHAPE=auto" in error["message"]


async def test_the_reading_is_in_the_debug_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="agent_endpoint"):
        await client.post("/invoke", json={**TRIP, "arize_metadata": METADATA}, headers=AUTH)
    assert "body read as flat (run run_1)" in caplog.text


def test_both_shapes_sync_and_async_against_a_live_server() -> None:
    """The shapes as the two Arize pages send them, on both routes of a real uvicorn."""
    app = create_app(make_settings(), agent=seen_by_agent)
    bodies = {
        "flat": {**TRIP, "arize_metadata": METADATA},
        "wrapped": {"input": TRIP, "arize_metadata": METADATA},
    }
    expected = {"input": TRIP, "config": TRIP["config"], "run_id": "run_1"}
    with live_server(app) as url, httpx.Client(base_url=url, headers=AUTH) as http:
        for body in bodies.values():
            sync = http.post("/invoke", json=body)
            assert sync.status_code == 200, sync.text
            assert sync.json() == expected
            submitted = http.post("/invoke/async", json=body)
            assert submitted.is_success, submitted.text
            status_url = submitted.json()["status_url"]
            deadline = time.monotonic() + 60
            while (job := http.get(status_url).json())["status"] != "succeeded":
                assert job["status"] in {"queued", "running"}, job
                assert time.monotonic() < deadline, job
                time.sleep(0.02)
            assert job["result"] == expected


# -- placeholders -------------------------------------------------------------------------------

PLACEHOLDERS = [
    pytest.param(
        {"goal": "{{dataset.question}}"},
        ["goal holds {{dataset.question}}", "no column named 'question'"],
        id="flat, playground style",
    ),
    pytest.param(
        {"goal": "{{question}}"},
        ["goal holds {{question}}", "writes {{dataset.question}}"],
        id="flat, setup-page style",
    ),
    pytest.param(
        {"input": {"goal": "{{question}}"}},
        ["input.goal holds {{question}}", "no column named 'question'"],
        id="wrapped, setup-page style",
    ),
    pytest.param(
        {"input": {"goal": "{{dataset.question}}"}},
        ["input.goal holds {{dataset.question}}", "writes {{question}}"],
        id="wrapped, playground style",
    ),
    pytest.param(
        {"input": {"goal": "Tokyo", "config": {"model": " {{ model }} "}}},
        ["input.config.model holds {{model}}"],
        id="wrapped, nested, spaces",
    ),
]


@pytest.mark.parametrize(("body", "fragments"), PLACEHOLDERS)
async def test_an_unfilled_placeholder_names_its_column(
    build_app: AppFactory, body: dict[str, Any], fragments: list[str]
) -> None:
    async with client_for(build_app(seen_by_agent)) as client:
        response = await client.post(
            "/invoke", json={**body, "arize_metadata": METADATA}, headers=AUTH
        )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "unfilled_placeholder"
    assert error["run_id"] == "run_1"
    for fragment in fragments:
        assert fragment in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"goal": "curly {{braces}} inside a value"},
        {"input": {"goal": "curly {{braces}} inside a value"}},
    ],
    ids=["flat", "wrapped"],
)
async def test_braces_inside_a_value_are_data_with_a_warning(
    build_app: AppFactory,
    exported: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    body: dict[str, Any],
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent_endpoint"):
        async with client_for(build_app(seen_by_agent)) as client:
            response = await client.post(
                "/invoke", json={**body, "arize_metadata": METADATA}, headers=AUTH
            )
    assert response.status_code == 200, response.text
    assert response.json()["input"]["goal"] == "curly {{braces}} inside a value"
    assert "{{braces}}" in caplog.text
    assert "run anyway, as data" in caplog.text
    (span,) = exported.get_finished_spans()
    assert span.attributes is not None
    warnings = span.attributes["agent_endpoint.warnings"]
    assert isinstance(warnings, list | tuple)
    assert len(warnings) == 1
    assert "{{braces}}" in str(warnings[0])


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("{{q}}", "q"),
        ("  {{ dataset.q }}  ", "dataset.q"),
        ("{{}}", None),
        ("{{a}} and {{b}}", None),  # nothing but a placeholder? no: text between
        ("{{{q}}}", None),
        ("a {{q}}", None),
        ("{q}", None),
    ],
)
def test_what_counts_as_nothing_but_a_placeholder(text: str, name: str | None) -> None:
    # "{{a}} and {{b}}" strips to "a}} and {{b": braces inside, so not one placeholder.
    assert whole_placeholder(text) == name


def test_single_braces_are_not_placeholders() -> None:
    found = find_placeholders({"a": "{x}", "b": "{ {y} }", "c": 3, "d": None})
    assert (found.whole, found.embedded) == ([], [])


def test_the_scan_is_linear_on_hostile_strings() -> None:
    """The old pattern `\\{\\{\\s*([^{}]*?)\\s*\\}\\}` took 82 s on 4,000 spaces after `{{`;
    these would take hours with it. Iterative too: a deep body cannot exhaust the stack."""
    hostile = "{{" + " " * 200_000 + "x" + " " * 200_000
    braces = "{{" * 100_000 + "}}" * 100_000
    deep: Any = "{{leaf}}"
    for _ in range(5_000):
        deep = [deep]
    found = find_placeholders({"a": hostile, "b": braces, "c": deep})
    assert found.whole == [("input.c" + "[0]" * 5_000, "leaf")]
    assert found.embedded == []


# -- arize_metadata never refuses a run --------------------------------------------------------

MISSING_ALL = "arize_metadata has no dataset_id, experiment_id, run_id, example_id, space_id"


@pytest.mark.parametrize(
    ("metadata", "kept", "warnings"),
    [
        pytest.param({}, {}, [MISSING_ALL], id="empty"),
        pytest.param(
            {**METADATA, "run_id": 5, "space_id": {"x": 1}, "future": [1]},
            {**METADATA, "run_id": "5", "space_id": None},
            [
                "arize_metadata.run_id is a number or boolean; used as text",
                "arize_metadata.space_id is a JSON object; ignored",
                "arize_metadata has no space_id",
            ],
            id="wrong types and extras",
        ),
        pytest.param(
            {"run_id": "run_9", "experiment_id": ""},
            {"run_id": "run_9"},
            ["arize_metadata has no dataset_id, experiment_id, example_id, space_id"],
            id="missing ids",
        ),
        pytest.param(
            "not an object", None, ["arize_metadata is a JSON string, not an object"], id="string"
        ),
    ],
)
async def test_metadata_never_refuses_and_its_problems_are_warnings(
    build_app: AppFactory,
    exported: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    metadata: Any,
    kept: dict[str, Any] | None,
    warnings: list[str],
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent_endpoint"):
        async with client_for(build_app(seen_by_agent)) as client:
            response = await client.post(
                "/invoke", json={**TRIP, "arize_metadata": metadata}, headers=AUTH
            )
    assert response.status_code == 200, response.text
    (span,) = exported.get_finished_spans()
    attributes = dict(span.attributes or {})
    recorded = " | ".join(attributes.get("agent_endpoint.warnings", ()))  # type: ignore[arg-type]
    for warning in warnings:
        assert warning in caplog.text
        assert warning in recorded
    if kept is None:
        assert "metadata" not in attributes
        return
    present = {key: value for key, value in kept.items() if value is not None}
    assert json.loads(str(attributes["metadata"])) == present
    assert response.json()["run_id"] == present.get("run_id")


def test_metadata_reading_keeps_extras() -> None:
    metadata, warnings = read_metadata({**METADATA, "project_name": "p", "new_key": {"a": 1}})
    assert metadata is not None
    assert metadata.run_ids() == {**METADATA, "project_name": "p"}
    assert metadata.model_extra == {"new_key": {"a": 1}}
    assert warnings == ()


async def test_rows_of_both_shapes_in_parallel(build_app: AppFactory) -> None:
    """Arize sends rows in parallel: the reading holds no shared state."""
    async with client_for(build_app(seen_by_agent)) as client:
        bodies = [
            {**TRIP, "arize_metadata": {**METADATA, "run_id": f"r{n}"}}
            if n % 2
            else {"input": TRIP, "arize_metadata": {**METADATA, "run_id": f"r{n}"}}
            for n in range(40)
        ]
        responses = await asyncio.gather(
            *(client.post("/invoke", json=body, headers=AUTH) for body in bodies)
        )
    assert [r.json()["run_id"] for r in responses] == [f"r{n}" for n in range(40)]
    assert all(r.json()["input"] == TRIP for r in responses)
