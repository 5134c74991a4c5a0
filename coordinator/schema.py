"""The agent's input schema and presets, as the coordinator uses them before sending."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

from jsonschema import validators

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


def body_validator(document: dict[str, Any]) -> Validate:
    schema = document["input_schema"]
    validator_class = validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)

    def validate(body: Any) -> list[str]:
        return sorted(
            "input"
            + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in e.absolute_path)
            + f": {e.message}"
            for e in validator.iter_errors(body)
        )

    return validate


def with_preset(template: Any, document: dict[str, Any], name: str) -> Any:
    presets = document.get("presets", {})
    if name not in presets:
        raise ValueError(f"no preset {name!r}; presets: {', '.join(presets) or 'none'}")
    if not isinstance(template, dict):
        raise ValueError("--preset needs a template that is a JSON object")  # noqa: TRY004
    return {**template, "config": presets[name]}
