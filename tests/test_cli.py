"""`agent-endpoint`: printing the schema, refusing a bad configuration with one readable line."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from app.settings import agent_dir
from tests.processes import run_python


def test_schema_prints_the_pasteable_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(
        (agent_dir() / "input_schema.json").read_text()
    )


def test_schema_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--presets"]) == 0
    assert "Cost optimized" in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no API keys configured: set AGENT_API_KEYS"),
        (
            {"AGENT_AUTH_DISABLED": "true", "AGENT_ENTRYPOINT": "tests.agents:missing"},
            "AGENT_ENTRYPOINT='tests.agents:missing'",
        ),
        ({"AGENT_API_KEYS": "changeme"}, "AGENT_API_KEYS: "),
        (
            {"AGENT_AUTH_DISABLED": "true", "AGENT_INPUT_SCHEMA_FILE": "/nonexistent.json"},
            "AGENT_INPUT_SCHEMA_FILE: file /nonexistent.json does not exist",
        ),
    ],
    ids=["no keys", "bad entrypoint", "placeholder key", "missing schema"],
)
def test_serve_refuses_a_bad_configuration(env: dict[str, str], message: str) -> None:
    result = run_python("-m", "app.cli", "serve", "--port", "1", env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
