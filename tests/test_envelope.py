"""The envelope and the diagnostics for its common mistakes, through the real app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.envelope import find_placeholders
from tests.conftest import AUTH, METADATA, AppFactory, client_for, envelope

pytestmark = pytest.mark.anyio


@pytest.fixture
def open_schema(tmp_path: Path) -> Path:
    """A schema that accepts any object, so only the placeholder check can refuse."""
    path = tmp_path / "open.json"
    path.write_text(json.dumps({"type": "object"}))
    return path


async def post_raw(
    client: httpx.AsyncClient, body: bytes, content_type: str | None = "application/json"
) -> httpx.Response:
    headers = dict(AUTH)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await client.post("/invoke", content=body, headers=headers)


async def test_agent_output_is_returned_verbatim(build_app: AppFactory) -> None:
    output = {"answer": [1, 2.5, None, True, "ü"], "nested": {"k": {}}}

    async def agent(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
        return output

    async with client_for(build_app(agent=agent)) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == output


async def test_metadata_extras_and_missing_project_name_are_accepted(
    build_app: AppFactory,
) -> None:
    seen: dict[str, Any] = {}

    async def agent(input: dict[str, Any], ctx: Any) -> dict[str, Any]:  # noqa: A002
        seen["metadata"] = ctx.metadata
        seen["input"] = input
        return {}

    body = envelope()
    body["arize_metadata"]["future_field"] = "kept"
    body["top_level_extra"] = {"also": "fine"}
    async with client_for(build_app(agent=agent)) as client:
        response = await client.post("/invoke", json=body, headers=AUTH)
    assert response.status_code == 200
    assert seen["metadata"].project_name is None
    assert seen["metadata"].run_id == "run_1"
    assert seen["metadata"].model_extra == {"future_field": "kept"}
    assert seen["input"] == body["input"]


async def test_envelope_without_metadata_is_accepted_for_local_testing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/invoke", json={"input": {"goal": "Tokyo"}}, headers=AUTH)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "kind", "fix"),
    [
        pytest.param(
            {"goal": "Plan a trip", "config": {}},
            422,
            "body_not_wrapped",
            "Arize wraps your templated body in `input`",
            id="top-level body",
        ),
        pytest.param(
            {"input": "Plan a trip"},
            422,
            "invalid_envelope",
            "must be a JSON object",
            id="input not an object",
        ),
        pytest.param([{"input": {}}], 422, "invalid_envelope", "JSON array", id="array body"),
        pytest.param(
            {"input": {"goal": "x"}, "arize_metadata": {"run_id": 5}},
            422,
            "invalid_metadata",
            "arize_metadata.run_id",
            id="metadata types",
        ),
        pytest.param(
            {"input": {"goal": "x"}, "arize_metadata": {**METADATA, "space_id": None}},
            422,
            "invalid_metadata",
            "arize_metadata.space_id",
            id="metadata missing id",
        ),
    ],
)
async def test_shape_diagnostics(
    client: httpx.AsyncClient, body: Any, status: int, kind: str, fix: str
) -> None:
    response = await client.post("/invoke", json=body, headers=AUTH)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind
    assert fix in error["message"]


async def test_top_level_body_lists_the_keys_it_saw(client: httpx.AsyncClient) -> None:
    response = await client.post("/invoke", json={"goal": "x", "config": {}}, headers=AUTH)
    assert "top-level keys: config, goal" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "kind", "fix"),
    [
        (b"", "empty_body", "the request body is empty"),
        (b"   ", "empty_body", "the request body is empty"),
        (b'{"input": {"goal": "x",}}', "invalid_json", "line 1, column 24"),
        (b'{"input": {"goal": {{question}}}}', "invalid_json", "unquoted placeholders"),
        (b'{"input": {"goal": "\xff"}}', "invalid_json", "not UTF-8"),
    ],
    ids=["empty", "blank", "trailing comma", "unquoted placeholder", "not utf-8"],
)
async def test_invalid_json(client: httpx.AsyncClient, body: bytes, kind: str, fix: str) -> None:
    response = await post_raw(client, body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == kind
    assert fix in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None],
)
async def test_non_json_content_type_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    response = await post_raw(client, b'{"input": {"goal": "x"}}', content_type)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
    ],
)
async def test_json_content_types_are_accepted(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await post_raw(client, b'{"input": {"goal": "Tokyo"}}', content_type)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("template_input", "expected"),
    [
        ({"goal": "{{question}}"}, ["input.goal holds {{question}}", "no column named 'question'"]),
        (
            {"goal": "{{dataset.question}}"},
            ["input.goal holds {{dataset.question}}", "write {{question}}"],
        ),
        (
            {"goal": "Tokyo", "config": {"model": "{{ model }}"}},
            ["input.config.model holds {{model}}"],
        ),
        (
            {"goal": "Tokyo", "history": ["ok", "see {{prev_answer}} and {{other}}"]},
            ["input.history[1] holds {{prev_answer}}", "input.history[1] holds {{other}}"],
        ),
    ],
    ids=["whole value", "dataset prefix", "nested", "in a list, twice"],
)
async def test_unfilled_placeholders(
    build_app: AppFactory, open_schema: Path, template_input: dict[str, Any], expected: list[str]
) -> None:
    async with client_for(build_app(input_schema_file=open_schema)) as client:
        response = await client.post(
            "/invoke", json={"input": template_input, "arize_metadata": METADATA}, headers=AUTH
        )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "unfilled_placeholder"
    assert error["run_id"] == "run_1"
    for fragment in expected:
        assert fragment in error["message"]


async def test_placeholder_check_can_be_turned_off(build_app: AppFactory) -> None:
    app = build_app(reject_placeholders=False)
    async with client_for(app) as client:
        response = await client.post("/invoke", json=envelope("{{jinja}} Tokyo"), headers=AUTH)
    assert response.status_code == 200


def test_single_braces_are_not_placeholders() -> None:
    assert find_placeholders({"a": "{x}", "b": "{ {y} }", "c": 3, "d": None}) == []
