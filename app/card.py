"""`agent-endpoint card --url https://…`: what to paste into Arize's New Agent form.

Arize's setup page (Space Settings → Agents → New Agent) asks for a name, a one-line
description, the exact endpoint URL ("Arize will not append paths"), auth headers, the input
schema and optional request presets; the Agent Playground's request editor then templates the
body with `{{dataset.column}}` placeholders. The card prints each of those from this
endpoint's own settings, so what is registered is what the server checks. It never prints a
key: the header lines carry a placeholder naming the setting the key comes from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.entrypoint import load_agent
from app.input_schema import InputSchema
from app.settings import Settings

KEY_PLACEHOLDER = "<one of your AGENT_API_KEYS>"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class CardError(ValueError):
    """The URL cannot be registered as given; the message names the fix."""


@dataclass(frozen=True)
class Card:
    name: str
    description: str
    url: str
    headers: list[dict[str, str]]
    input_schema: dict[str, Any]
    presets: dict[str, dict[str, Any]]
    request_template: dict[str, Any]
    placeholders: str
    notes: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "url": self.url,
            "headers": self.headers,
            "input_schema": self.input_schema,
            "presets": self.presets,
            "request_template": self.request_template,
            "placeholders": self.placeholders,
            "notes": self.notes,
        }

    def as_text(self) -> str:
        def block(value: Any) -> str:
            return json.dumps(value, indent=2, ensure_ascii=False)

        headers = "\n".join(f"  {h['name']}: {h['value']}" for h in self.headers) or "  (none)"
        lines = [
            "Arize → Space Settings → Agents → New Agent",
            "",
            f"Name:         {self.name}",
            f"Description:  {self.description}",
            f"Endpoint URL: {self.url}",
            "Headers (Add Header; paste the key itself, Arize stores it encrypted):",
            headers,
            "",
            "Input Schema:",
            block(self.input_schema),
            "",
            "Request presets (name → payload):",
            block(self.presets) if self.presets else "  (none)",
            "",
            f"Placeholders: {self.placeholders}",
            "Request editor (Agent Playground), a starting template:",
            block(self.request_template),
        ]
        if self.notes:
            lines += ["", "Notes:", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"


def build_card(
    settings: Settings,
    url: str,
    *,
    asynchronous: bool = False,
    name: str | None = None,
    description: str | None = None,
) -> Card:
    """The card for this endpoint served at `url` (a base URL or the exact route URL)."""
    schema = InputSchema.from_files(settings.input_schema_file, settings.presets_file)
    route = settings.invoke_path.rstrip("/") + ("/async" if asynchronous else "")
    full_url, notes = _endpoint_url(url, route)
    agent = load_agent(settings.entrypoint)
    return Card(
        name=name or settings.service_name,
        description=description or _description(agent.function, schema.schema),
        url=full_url,
        headers=_headers(settings),
        input_schema=schema.schema,
        presets=schema.presets,
        request_template=request_template(schema.schema, schema.presets),
        placeholders=_placeholder_style(settings),
        notes=notes + _auth_notes(settings),
    )


def _endpoint_url(url: str, route: str) -> tuple[str, list[str]]:
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise CardError(
            f"--url {url!r} is not an absolute http(s) URL; give the public address, e.g. "
            "https://my-agent.example.com"
        )
    notes: list[str] = []
    if parts.query or parts.fragment:
        raise CardError(f"--url {url!r} has a query or fragment; give the address alone")
    path = parts.path.rstrip("/")
    if not path.endswith(route):
        path = f"{path}{route}"
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        notes.append(
            "the URL is plain http: Arize sends your key with every request, so serve it "
            "behind HTTPS (docs: deploy)"
        )
    return f"{parts.scheme}://{parts.netloc}{path}", notes


def _headers(settings: Settings) -> list[dict[str, str]]:
    if settings.auth_disabled and not settings.api_keys:
        return []
    headers = []
    if settings.auth_mode in {"any", "bearer"}:
        headers.append({"name": "Authorization", "value": f"Bearer {KEY_PLACEHOLDER}"})
    else:
        headers.append({"name": settings.api_key_header, "value": KEY_PLACEHOLDER})
    headers += [
        {"name": header, "value": f"<the value of {header} in AGENT_REQUIRED_HEADERS>"}
        for header in settings.required_headers
    ]
    return headers


def _auth_notes(settings: Settings) -> list[str]:
    if settings.auth_disabled and not settings.api_keys:
        return [
            "authentication is off (AGENT_AUTH_DISABLED=true): set AGENT_API_KEYS before the "
            "endpoint is reachable from Arize"
        ]
    if settings.auth_mode == "any":
        return [
            f"`{settings.api_key_header}: {KEY_PLACEHOLDER}` works instead of Authorization "
            "(AGENT_AUTH_MODE=any)"
        ]
    return []


def _placeholder_style(settings: Settings) -> str:
    flat = (
        "the Agent Playground's request editor writes {{dataset.column_name}} and sends the "
        "fields at the top level, arize_metadata beside them"
    )
    wrapped = (
        "the setup page's body template writes {{column_name}} and is sent wrapped in "
        '{"input": {...}}'
    )
    if settings.body_shape == "flat":
        return flat
    if settings.body_shape == "wrapped":
        return wrapped + " (AGENT_BODY_SHAPE=wrapped: the flat shape is refused)"
    return f"{flat}; {wrapped}; this endpoint accepts both (AGENT_BODY_SHAPE=auto)"


def request_template(schema: dict[str, Any], presets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A body for the request editor: each required string field from a dataset column of the
    same name, `config` from the first preset (a preset replaces it when chosen)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    required = schema.get("required", [])
    template: dict[str, Any] = {
        field: f"{{{{dataset.{field}}}}}"
        for field in required
        if isinstance(field, str) and isinstance(properties.get(field), dict)
    }
    if "config" in properties and presets:
        template["config"] = next(iter(presets.values()))
    return template


def _description(function: Any, schema: dict[str, Any]) -> str:
    doc = (getattr(function, "__doc__", None) or "").strip()
    if doc:
        return doc.splitlines()[0]
    title = schema.get("title")
    return str(title) if title else "An agent behind agent-endpoint"
