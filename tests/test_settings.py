"""Settings from the environment: parsing, refusal of unusable values, no secret in messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.main import create_app
from app.settings import Settings, SettingsError, load_settings
from tests.conftest import KEY, OLD_KEY, make_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Start from an environment with no AGENT_*, OTEL_*, ARIZE_* variables and no .env file."""
    for name in list(os.environ):
        if name.startswith(("AGENT_", "OTEL_", "ARIZE_")) or name == "PORT":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_keys_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_API_KEYS", f" {KEY} , {OLD_KEY},")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, OLD_KEY]
    assert KEY not in repr(settings)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"AGENT_API_KEYS={KEY}\nAGENT_TIMEOUT_SECONDS=42\n")
    settings = Settings()
    assert settings.timeout_seconds == 42
    assert settings.api_keys[0].get_secret_value() == KEY


def test_env_file_variable_names_the_dotenv_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("AGENT_TIMEOUT_SECONDS=42\n")
    (tmp_path / "staging.env").write_text("AGENT_TIMEOUT_SECONDS=7\n")
    assert load_settings().timeout_seconds == 42
    monkeypatch.setenv("AGENT_ENV_FILE", str(tmp_path / "staging.env"))
    assert load_settings().timeout_seconds == 7
    monkeypatch.setenv("AGENT_ENV_FILE", "")
    assert load_settings().timeout_seconds == Settings.model_fields["timeout_seconds"].default


def test_required_headers_are_name_value_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_REQUIRED_HEADERS", "X-Team=alpha, X-Env = prod")
    settings = Settings(api_keys=[KEY])
    assert {k: v.get_secret_value() for k, v in settings.required_headers.items()} == {
        "X-Team": "alpha",
        "X-Env": "prod",
    }


def test_malformed_required_header_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_REQUIRED_HEADERS", "X-Team")
    with pytest.raises(SettingsError, match="must look like Name=value"):
        load_settings()


@pytest.mark.parametrize("port_variable", ["PORT", "AGENT_PORT"])
def test_port_from_paas_or_agent_variable(
    monkeypatch: pytest.MonkeyPatch, port_variable: str
) -> None:
    monkeypatch.setenv(port_variable, "9123")
    assert Settings().port == 9123


@pytest.mark.parametrize("bad", ["changeme", "short-key", "SECRET"])
def test_placeholder_or_short_keys_are_refused(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("AGENT_API_KEYS", f"{KEY},{bad}")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "AGENT_API_KEYS: " in message
    assert "entry #2" in message
    assert "secrets.token_urlsafe" in message
    assert bad not in message
    assert KEY not in message


def test_no_keys_refuses_to_start() -> None:
    with pytest.raises(SettingsError, match="no API keys configured: set AGENT_API_KEYS"):
        create_app(make_settings(api_keys=[]))


def test_invalid_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TIMEOUT_SECONDS", "soon")
    with pytest.raises(SettingsError, match="AGENT_TIMEOUT_SECONDS: "):
        load_settings()


def test_invoke_path_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        make_settings(invoke_path="invoke")


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, set()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:6006"}, {"otlp"}),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:6006/v1/traces"}, {"otlp"}),
        ({"ARIZE_API_KEY": "ak-123"}, {"arize"}),
        ({"ARIZE_API_KEY": ""}, set()),
        (
            {"ARIZE_API_KEY": "ak", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"},
            {"arize", "otlp"},
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, {"console"}),
        ({"OTEL_TRACES_EXPORTER": "none", "ARIZE_API_KEY": "ak"}, set()),
        ({"OTEL_TRACES_EXPORTER": "OTLP, console"}, {"otlp", "console"}),
    ],
)
def test_exporters_follow_the_otel_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], exporters: set[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().exporters == exporters


def test_an_unknown_exporter_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,jaeger")
    with pytest.raises(SettingsError, match=r"OTEL_TRACES_EXPORTER: .*unknown exporter jaeger"):
        load_settings()


def test_an_unknown_otlp_protocol_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "arize"}, "ARIZE_API_KEY is not set"),
        ({"ARIZE_API_KEY": "ak-123"}, "ARIZE_SPACE_ALLOWLIST is empty"),
    ],
)
def test_arize_export_needs_a_key_and_an_allowlist(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings(api_keys=KEY).check_tracing_configured()


def test_arize_export_with_key_and_allowlist_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARIZE_API_KEY", "ak-123")
    monkeypatch.setenv("ARIZE_SPACE_ALLOWLIST", "U3BhY2U6MQ==, U3BhY2U6Mg==")
    settings = load_settings()
    settings.check_tracing_configured()
    assert settings.arize_space_allowlist == ["U3BhY2U6MQ==", "U3BhY2U6Mg=="]
    assert "ak-123" not in repr(settings)
