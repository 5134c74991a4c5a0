"""`agent-endpoint card`: what to paste into Arize's New Agent form, from the real settings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.card import KEY_PLACEHOLDER, request_template
from app.settings import agent_dir
from tests.conftest import KEY
from tests.processes import run_python


def card(*args: str, **env: str) -> dict[str, Any]:
    result = run_python(
        "-m", "app.cli", "card", "--json", *args, env={"AGENT_API_KEYS": KEY, **env}
    )
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout + result.stderr
    printed: dict[str, Any] = json.loads(result.stdout)
    return printed


def test_the_card_has_every_field_of_the_form_and_no_key() -> None:
    printed = card("--url", "https://agent.example.com")
    assert printed["name"] == "agent-endpoint"
    assert printed["description"].startswith("Plans a short city trip")
    assert printed["url"] == "https://agent.example.com/invoke"
    assert printed["headers"] == [{"name": "Authorization", "value": f"Bearer {KEY_PLACEHOLDER}"}]
    assert printed["input_schema"] == json.loads((agent_dir() / "input_schema.json").read_text())
    assert "Cost optimized" in printed["presets"]
    assert printed["request_template"] == {
        "goal": "{{dataset.goal}}",
        "config": {"model": "claude-sonnet-4-5", "max_turns": 12},
    }
    assert "{{dataset.column_name}}" in printed["placeholders"]
    assert "{{column_name}}" in printed["placeholders"]
    assert any("X-API-Key" in note for note in printed["notes"])


@pytest.mark.parametrize(
    ("args", "url"),
    [
        (["--url", "https://a.example.com/"], "https://a.example.com/invoke"),
        (["--url", "https://a.example.com/invoke"], "https://a.example.com/invoke"),
        (
            ["--url", "https://a.example.com/team/x", "--async"],
            "https://a.example.com/team/x/invoke/async",
        ),
        (["--url", "http://127.0.0.1:8000"], "http://127.0.0.1:8000/invoke"),
    ],
    ids=["base with slash", "exact URL", "under a prefix, async", "local http"],
)
def test_the_url_is_the_exact_route(args: list[str], url: str) -> None:
    printed = card(*args)
    assert printed["url"] == url
    assert not any("plain http" in note for note in printed["notes"])


def test_header_mode_plain_http_and_required_headers_are_shown() -> None:
    printed = card(
        "--url",
        "http://agent.example.com",
        AGENT_AUTH_MODE="header",
        AGENT_API_KEY_HEADER="X-Agent-Key",
        AGENT_REQUIRED_HEADERS="X-Tenant=acme-secret-value",
        AGENT_BODY_SHAPE="wrapped",
    )
    assert [h["name"] for h in printed["headers"]] == ["X-Agent-Key", "X-Tenant"]
    assert "acme-secret-value" not in json.dumps(printed)
    assert any("plain http" in note for note in printed["notes"])
    assert "AGENT_BODY_SHAPE=wrapped" in printed["placeholders"]


def test_the_text_card_and_a_bad_url() -> None:
    text = run_python(
        "-m", "app.cli", "card", "--url", "https://a.example.com", env={"AGENT_API_KEYS": KEY}
    )
    assert text.returncode == 0, text.stderr
    assert "Endpoint URL: https://a.example.com/invoke" in text.stdout
    assert f"Authorization: Bearer {KEY_PLACEHOLDER}" in text.stdout
    bad = run_python(
        "-m", "app.cli", "card", "--url", "agent.example.com", env={"AGENT_API_KEYS": KEY}
    )
    assert bad.returncode == 2
    assert "not an absolute http(s) URL" in bad.stderr


def test_the_request_template_follows_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"question": {"type": "string"}, "lang": {"type": "string"}},
        "required": ["question"],
    }
    assert request_template(schema, {}) == {"question": "{{dataset.question}}"}
    assert request_template({"type": "object"}, {"p": {"a": 1}}) == {}
