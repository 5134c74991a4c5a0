"""The envelope and the diagnostics for its common mistakes, through the real app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

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
    assert seen["input"] == body["input"]  # the schema refuses the flat reading's extra key


async def test_envelope_without_metadata_is_accepted_for_local_testing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/invoke", json={"input": {"goal": "Tokyo"}}, headers=AUTH)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "kind", "fix"),
    [
        pytest.param(
            [{"input": {}}], "invalid_envelope", "the request body is a JSON array", id="array"
        ),
        pytest.param("Plan a trip", "invalid_envelope", "JSON string", id="string"),
        pytest.param(
            {"arize_metadata": METADATA},
            "input_schema_violation",
            "input schema (read as the Agent Playground's flat body (fields at the top level); "
            "not the setup page's wrapped body either: it has no `input` object) (1 problem): "
            '"goal" is a required property',
            id="neither shape: no fields",
        ),
        pytest.param(
            {"input": {"question": "x"}, "arize_metadata": METADATA},
            "input_schema_violation",
            "the body fits neither shape of Arize's request: read as the setup page's wrapped "
            'body ({"input": {...}}) (2 problems): input: "goal" is a required property; '
            "input: Additional properties are not allowed ('question' was unexpected); read as "
            'the Agent Playground\'s flat body (fields at the top level) (2 problems): "goal" is '
            "a required property; Additional properties are not allowed ('input' was unexpected)",
            id="neither shape: both readings",
        ),
    ],
)
async def test_bodies_that_fit_no_shape(
    client: httpx.AsyncClient, body: Any, kind: str, fix: str
) -> None:
    response = await client.post("/invoke", json=body, headers=AUTH)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == kind
    assert fix in error["message"]


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


async def test_placeholder_check_can_be_turned_off(build_app: AppFactory) -> None:
    app = build_app(reject_placeholders=False)
    async with client_for(app) as client:
        response = await client.post("/invoke", json=envelope("{{jinja}} Tokyo"), headers=AUTH)
    assert response.status_code == 200
