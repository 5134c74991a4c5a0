"""The agent's input schema and presets, as the coordinator uses them before sending.

Presets come from the endpoint's `GET /schema` (or a file): named config payloads, as the setup
page calls them (https://arize.com/docs/ax/improve/setup-agent-endpoint), which fill `config`
inside the templated body. The Agent Playground (https://arize.com/docs/ax/improve/agent-playground)
merges a preset's fields into the request at the top level instead, "so a preset that sets
config replaces config but leaves your goal placeholder untouched": for a config payload that is
the same `config` replaced, so both shapes give the agent the same `ctx.config`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

import jsonschema_rs

from coordinator.template import Shape

Validate = Callable[[Any], list[str]]


def schema_document(source: str, invoke_url: str, headers: dict[str, str]) -> dict[str, Any]:
    """`{"input_schema", "presets"}` from 'auto' (the endpoint's GET /schema), a URL or a file."""
    if source == "auto" or source.startswith(("http://", "https://")):
        url = source
        if source == "auto":
            parts = urlsplit(invoke_url)
            url = urlunsplit((parts.scheme, parts.netloc, "/schema", "", ""))
        try:
            with urlopen(Request(url, headers=headers), timeout=30) as response:  # noqa: S310 - http(s) only
                loaded: Any = json.loads(response.read())
        except HTTPError as exc:
            raise ValueError(f"GET {url} answered {exc.code}; pass --schema FILE") from None
        except (URLError, OSError) as exc:
            raise ValueError(f"GET {url} failed ({exc}); pass --schema FILE") from None
    else:
        loaded = json.loads(Path(source).read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError("the schema document must be a JSON object")  # noqa: TRY004
    if "input_schema" in loaded:
        return {"input_schema": loaded["input_schema"], "presets": loaded.get("presets", {})}
    return {"input_schema": loaded, "presets": {}}


def body_validator(document: dict[str, Any], shape: Shape = "flat") -> Validate:
    """Checks a hydrated template against the input schema; each violation is named by its
    path in the body as sent (`input.goal` wrapped, `goal` flat), where the user looks for it."""
    validator = jsonschema_rs.validator_for(document["input_schema"], validate_formats=True)

    def validate(body: Any) -> list[str]:
        return sorted(
            (_path(e.instance_path, shape) or "body") + f": {e.message}"
            for e in validator.iter_errors(body)
        )

    return validate


def _path(parts: Any, shape: Shape) -> str:
    path = "input" if shape == "wrapped" else ""
    for part in parts:
        path += (f".{part}" if path else str(part)) if isinstance(part, str) else f"[{part}]"
    return path


def with_preset(
    template: Any, document: dict[str, Any], name: str, shape: Shape = "flat"
) -> dict[str, Any]:
    """The template with the preset picked, as Arize applies it in this shape.

    Wrapped: the preset's payload becomes `config` (the setup page's named config payload).
    Flat: the preset's fields are merged at the top level, replacing the template's. A payload
    whose keys are all top-level properties of the input schema is already such a set of fields
    (`{"config": {...}}`, say); any other payload is a config payload, merged as
    `{"config": payload}`, which is what the Agent Playground's merge does with it.
    """
    presets = document.get("presets", {})
    if name not in presets:
        raise ValueError(f"no preset {name!r}; presets: {', '.join(presets) or 'none'}")
    if not isinstance(template, dict):
        raise ValueError("--preset needs a template that is a JSON object")  # noqa: TRY004
    payload = presets[name]
    if shape == "wrapped":
        return {**template, "config": payload}
    schema = document.get("input_schema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(payload, dict) and payload and isinstance(properties, dict):  # noqa: SIM102
        if payload.keys() <= properties.keys():
            return {**template, **payload}
    return {**template, "config": payload}
