"""The input JSON Schema (what you paste into Arize's agent registration) and named presets.

Both live in JSON files (AGENT_INPUT_SCHEMA_FILE, AGENT_PRESETS_FILE), are checked once at
start-up, and are served by `GET /schema` and printed by `agent-endpoint schema`.

One validator, jsonschema-rs: it checks the schema itself at start-up, answers the request
path's yes or no about a hundred times faster than the pure-Python `jsonschema` did, and lists
every violation with its path when it says no. (The project used both until issue 15: the pure
one only for its messages, which jsonschema-rs gives too.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs

from app.errors import ApiError

MAX_LISTED_VIOLATIONS = 50
MAX_MESSAGE_CHARS = 200


class SchemaFileError(ValueError):
    """The schema or presets file cannot be used; the message names the file and the fix."""


class InputSchema:
    def __init__(self, schema: dict[str, Any], presets: dict[str, dict[str, Any]]) -> None:
        self._validator = compiled(schema, "the input schema")
        self.schema = schema
        self.presets = presets
        self._check_presets()

    @classmethod
    def from_files(cls, schema_file: Path, presets_file: Path | None) -> InputSchema:
        schema = _read_json(schema_file, "AGENT_INPUT_SCHEMA_FILE")
        presets = _read_json(presets_file, "AGENT_PRESETS_FILE") if presets_file else {}
        if not isinstance(schema, dict):
            raise SchemaFileError(f"AGENT_INPUT_SCHEMA_FILE {schema_file} must hold a JSON object")
        if not isinstance(presets, dict) or not all(isinstance(v, dict) for v in presets.values()):
            raise SchemaFileError(
                f"AGENT_PRESETS_FILE {presets_file} must map preset names to config objects, "
                'e.g. {"Production baseline": {"model": "claude-sonnet-4-5"}}'
            )
        return cls(schema, presets)

    @property
    def declares_input(self) -> bool:
        """Whether the schema names a top-level `input` property (a flat body may have one)."""
        properties = self.schema.get("properties")
        return isinstance(properties, dict) and "input" in properties

    def accepts(self, payload: dict[str, Any]) -> bool:
        """The fast yes or no (jsonschema-rs); `violations` says why not."""
        return bool(self._validator.is_valid(payload))

    def violations(self, payload: dict[str, Any], root: str = "input") -> list[str]:
        """Every way `payload` breaks the schema, as `root.path: message`, in path order."""
        found = []
        for error in self._validator.iter_errors(payload):
            path = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.instance_path
            )
            where = f"{root}{path}".lstrip(".")
            found.append(f"{where}: {_cut(error.message)}" if where else _cut(error.message))
        return sorted(found)

    def check(self, payload: dict[str, Any], run_id: str | None, root: str = "input") -> None:
        """422 listing every violation (the first MAX_LISTED_VIOLATIONS of them)."""
        if self.accepts(payload):
            return
        raise self.refusal(self.violations(payload, root), run_id)

    def refusal(self, found: list[str], run_id: str | None, note: str = "") -> ApiError:
        """The 422 for these violations; `note` says how the body was read."""
        return ApiError(
            422,
            "input_schema_violation",
            f"the agent's input does not match its input schema{note} ({problems(found)}): "
            + listed(found)
            + " — fix the body template in Arize, or the schema (GET /schema shows it)",
            run_id=run_id,
        )

    def _check_presets(self) -> None:
        config_schema = self.schema.get("properties", {}).get("config")
        if not isinstance(config_schema, dict):
            return
        validator = compiled(config_schema, "the input schema's `config`")
        for name, config in self.presets.items():
            problems = [error.message for error in validator.iter_errors(config)]
            if problems:
                raise SchemaFileError(
                    f"preset {name!r} does not match the input schema's `config`: "
                    + "; ".join(problems)
                )

    def openapi_schema(self, base: str) -> dict[str, Any]:
        """The schema with local `$ref`s rebased to its place in the OpenAPI document."""
        rebased: dict[str, Any] = _rebase_refs(
            {k: v for k, v in self.schema.items() if k != "$schema"}, base
        )
        return rebased


def compiled(schema: dict[str, Any], what: str) -> jsonschema_rs.Validator:
    """A validator for `schema` (its draft from `$schema`, 2020-12 by default), formats checked;
    SchemaFileError naming the problem when the schema itself is not valid."""
    try:
        return jsonschema_rs.validator_for(schema, validate_formats=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaFileError(f"{what} is not a valid JSON Schema: {first}") from None


def problems(found: list[str]) -> str:
    return f"{len(found)} problem{'s' if len(found) != 1 else ''}"


def listed(found: list[str]) -> str:
    """The first MAX_LISTED_VIOLATIONS problems, and how many more there are."""
    shown = found[:MAX_LISTED_VIOLATIONS]
    more = f"; and {len(found) - len(shown)} more" if len(found) > len(shown) else ""
    return "; ".join(shown) + more


def _cut(message: str) -> str:
    """A violation message quotes the offending value: keep it short (a body may be 1 MB)."""
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "…"


def _read_json(path: Path, variable: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaFileError(f"{variable}: file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise SchemaFileError(
            f"{variable}: {path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None


def _rebase_refs(node: Any, base: str) -> Any:
    if isinstance(node, dict):
        return {
            key: (base + value[1:])
            if key == "$ref" and isinstance(value, str) and value.startswith("#")
            else _rebase_refs(value, base)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rebase_refs(item, base) for item in node]
    return node
