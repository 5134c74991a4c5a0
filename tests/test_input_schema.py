"""The input JSON Schema: every violation listed, presets checked, files diagnosed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.errors import ApiError
from app.input_schema import InputSchema, SchemaFileError
from app.settings import agent_dir
from tests.agents import echo
from tests.conftest import AUTH, METADATA, AppFactory, client_for

pytestmark = pytest.mark.anyio


async def test_every_violation_is_listed(client: httpx.AsyncClient) -> None:
    body = {
        "input": {"goal": "", "config": {"model": 3, "max_turns": 0, "temperature": 1}, "x": 1},
        "arize_metadata": METADATA,
    }
    response = await client.post("/invoke", json=body, headers=AUTH)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "input_schema_violation"
    assert error["run_id"] == "run_1"
    message = error["message"]
    assert "(5 problems)" in message
    for fragment in [
        'input.goal: "" is shorter than 1 character',
        'input.config.model: 3 is not of type "string"',
        "input.config.max_turns: 0 is less than the minimum of 1",
        "input.config: Additional properties are not allowed ('temperature' was unexpected)",
        "input: Additional properties are not allowed ('x' was unexpected)",
    ]:
        assert fragment in message


async def test_missing_required_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/invoke", json={"input": {"config": {}}, "arize_metadata": METADATA}, headers=AUTH
    )
    assert response.status_code == 422
    assert 'input: "goal" is a required property' in response.json()["error"]["message"]


async def test_schema_route_serves_schema_and_presets(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema")).json()
    on_disk = json.loads((agent_dir() / "input_schema.json").read_text())
    assert document["input_schema"] == on_disk
    assert document["presets"]["Production baseline"] == {
        "model": "claude-sonnet-4-5",
        "max_turns": 12,
    }
    assert document["invoke_path"] == "/invoke"


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


async def test_custom_schema_with_refs_validates_and_documents(
    build_app: AppFactory, tmp_path: Path
) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"question": {"$ref": "#/$defs/text"}},
        "required": ["question"],
        "$defs": {"text": {"type": "string", "maxLength": 5}},
    }
    app = build_app(
        agent=echo, input_schema_file=write(tmp_path / "s.json", schema), presets_file=None
    )
    async with client_for(app) as client:
        ok = await client.post("/invoke", json={"input": {"question": "hi"}}, headers=AUTH)
        too_long = await client.post(
            "/invoke", json={"input": {"question": "toolong"}}, headers=AUTH
        )
        spec = (await client.get("/openapi.json")).json()
    assert ok.status_code == 200
    assert (
        'input.question: "toolong" is longer than 5 characters'
        in too_long.json()["error"]["message"]
    )
    body = spec["paths"]["/invoke"]["post"]["requestBody"]["content"]["application/json"]
    flat, wrapped = body["schema"]["anyOf"]
    flat_ref = flat["properties"]["question"]["$ref"]
    wrapped_ref = wrapped["properties"]["input"]["properties"]["question"]["$ref"]
    assert flat_ref.endswith("/schema/anyOf/0/$defs/text")
    assert wrapped_ref.endswith("/schema/anyOf/1/properties/input/$defs/text")
    for ref in (flat_ref, wrapped_ref):
        assert ref.startswith("#/paths/~1invoke/post/requestBody")


def test_preset_that_breaks_the_config_schema_is_refused(tmp_path: Path) -> None:
    presets = write(tmp_path / "p.json", {"Bad": {"model": "m", "max_turns": "many"}})
    with pytest.raises(
        SchemaFileError, match=r"preset 'Bad' does not match.*\"many\" is not of type \"integer\""
    ):
        InputSchema.from_files(agent_dir() / "input_schema.json", presets)


@pytest.mark.parametrize(
    ("schema", "presets", "message"),
    [
        ("{not json", {}, "is not valid JSON (line 1, column 2)"),
        ([1, 2], {}, "must hold a JSON object"),
        ({"type": "objekt"}, {}, "not a valid JSON Schema"),
        ({"type": "object"}, ["a"], "must map preset names to config objects"),
    ],
    ids=["not json", "not an object", "invalid schema", "presets not a mapping"],
)
def test_unusable_files_are_diagnosed(
    tmp_path: Path, schema: Any, presets: Any, message: str
) -> None:
    with pytest.raises(SchemaFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        InputSchema.from_files(
            write(tmp_path / "s.json", schema), write(tmp_path / "p.json", presets)
        )


def test_missing_schema_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SchemaFileError, match=r"AGENT_INPUT_SCHEMA_FILE: file .* does not exist"):
        InputSchema.from_files(tmp_path / "nope.json", None)


def test_many_violations_are_capped_in_the_message() -> None:
    schema = InputSchema({"type": "object", "additionalProperties": {"type": "integer"}}, {})
    violations = schema.violations({f"k{i:03}": "x" for i in range(80)})
    assert len(violations) == 80
    with pytest.raises(ApiError, match="and 30 more") as refused:
        schema.check({f"k{i:03}": "x" for i in range(80)}, None)
    assert (refused.value.status_code, refused.value.error_type) == (422, "input_schema_violation")


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("2026-11-23", True), ("23/11/2026", False), ("2026-13-01", False)],
)
def test_formats_are_checked(value: str, accepted: bool) -> None:
    """Formats are enforced on the fast path and reported by the detailed one."""
    schema = InputSchema(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"day": {"type": "string", "format": "date"}},
        },
        {},
    )
    if accepted:
        schema.check({"day": value}, None)
    else:
        with pytest.raises(ApiError, match=r"input\.day: .* is not a \"date\""):
            schema.check({"day": value}, None)
