"""The envelope Arize POSTs for every dataset row, and the diagnostics for its common mistakes.

    {"input": {...the body you templated...},
     "arize_metadata": {"dataset_id", "experiment_id", "run_id", "example_id", "space_id",
                        "project_name"?, ...}}

Extra keys are kept at both levels. Each diagnostic names the fix, because the person reading
it is usually looking at Arize's experiment table, not at this code.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import ApiError

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")

EXAMPLE_ENVELOPE: dict[str, Any] = {
    "input": {
        "goal": "Plan a 3-day trip to Tokyo",
        "config": {"model": "claude-sonnet-4-5", "max_turns": 12},
    },
    "arize_metadata": {
        "dataset_id": "RGF0YXNldDox",
        "experiment_id": "RXhwZXJpbWVudDox",
        "run_id": "RXhwZXJpbWVudFJ1bjox",
        "example_id": "RGF0YXNldEV4YW1wbGU6MQ==",
        "space_id": "U3BhY2U6MQ==",
        "project_name": "customer-support-v2",
    },
}


RUN_ID_FIELDS = frozenset(
    {"dataset_id", "experiment_id", "run_id", "example_id", "space_id", "project_name"}
)


class ArizeMetadata(BaseModel):
    """IDs Arize appends to every request; use them to stamp spans and pushed results."""

    model_config = ConfigDict(extra="allow", frozen=True)

    dataset_id: str
    experiment_id: str
    run_id: str
    example_id: str
    space_id: str
    project_name: str | None = None

    def run_ids(self) -> dict[str, str]:
        """The ids above, without extras and without an unset project."""
        return self.model_dump(include=set(RUN_ID_FIELDS), exclude_none=True)


class InvokeRequest(BaseModel):
    """The envelope: your templated body under `input`, Arize's IDs under `arize_metadata`."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EXAMPLE_ENVELOPE]})

    input: dict[str, Any] = Field(description="The body templated in Arize, hydrated per row.")
    arize_metadata: ArizeMetadata | None = Field(
        default=None,
        description="Appended by Arize on every request; optional for local testing.",
    )


JSON_CONTENT_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


def check_content_type(content_type: str | None) -> None:
    """415 unless the body is declared as JSON."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if not JSON_CONTENT_TYPE.match(media_type):
        shown = media_type or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type is {shown}; send the body as JSON with `Content-Type: application/json`",
        )


def parse_envelope(body: bytes) -> InvokeRequest:
    """Parse and diagnose the raw body; every failure is a 4xx that names the fix."""
    if not body.strip():
        raise ApiError(
            400,
            "empty_body",
            'the request body is empty; send {"input": {...}, "arize_metadata": {...}}',
        )
    try:
        document = json.loads(body.decode("utf-8"))  # RFC 8259: JSON on the wire is UTF-8
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = (
            f" (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else " (it is not UTF-8)"
        )
        raise ApiError(
            400,
            "invalid_json",
            f"the request body is not valid JSON{where}: check the body template in Arize "
            "for unquoted placeholders or trailing commas",
        ) from None
    if not isinstance(document, dict):
        raise ApiError(
            422,
            "invalid_envelope",
            f"the request body is a JSON {_json_kind(document)}; Arize sends an object "
            '{"input": {...}, "arize_metadata": {...}}',
        )
    if "input" not in document:
        keys = ", ".join(sorted(document)) or "none"
        raise ApiError(
            422,
            "body_not_wrapped",
            "no `input` key: Arize wraps your templated body in `input`, so send "
            '{"input": {...your body...}, "arize_metadata": {...}}; '
            f"this body has top-level keys: {keys}",
        )
    if not isinstance(document["input"], dict):
        raise ApiError(
            422,
            "invalid_envelope",
            f"`input` is a JSON {_json_kind(document['input'])}; the body template in Arize "
            'must be a JSON object such as {"goal": "{{input}}"}',
        )
    try:
        return InvokeRequest.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise ApiError(
            422,
            "invalid_metadata",
            f"invalid envelope ({problems}); `arize_metadata` is filled in by Arize "
            "and holds string ids: dataset_id, experiment_id, run_id, example_id, space_id",
        ) from None


def find_placeholders(value: Any, path: str = "input") -> list[tuple[str, str]]:
    """Every `{{column}}` left unfilled, as (json path, placeholder name) pairs."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        if "{{" in value:
            found.extend((path, name) for name in PLACEHOLDER.findall(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(find_placeholders(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(find_placeholders(item, f"{path}[{index}]"))
    return found


def check_placeholders(payload: dict[str, Any]) -> None:
    """422 naming every placeholder the dataset did not fill."""
    found = find_placeholders(payload)
    if not found:
        return
    hints = []
    for path, name in found:
        if name.startswith("dataset."):
            column = name.removeprefix("dataset.")
            hints.append(
                f"{path} holds {{{{{name}}}}}: write {{{{{column}}}}}, "
                "placeholders name the column only"
            )
        else:
            hints.append(
                f"{path} holds {{{{{name}}}}}: the dataset has no column named {name!r} "
                "(placeholders must match column names exactly)"
            )
    raise ApiError(
        422, "unfilled_placeholder", "unfilled template placeholders: " + "; ".join(hints)
    )


def _json_kind(value: object) -> str:
    return {
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }.get(type(value), "value")
