"""render.yaml, the Render Blueprint: true to the app, and its commented async addition too.

Render's own validator needs an account (`render blueprints validate` calls its API), so this
checks what can be checked offline: the fields a Docker web service needs, the health path
against the real app's routes, every variable against the Settings model, secrets never given
as values, and that the settings Render starts the service with pass the app's checks.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from app.cli import main as cli_main
from app.main import create_app
from app.settings import Settings, variable_names
from tests.conftest import make_settings

yaml: Any = importlib.import_module("yaml")

ROOT = Path(__file__).parent.parent
TEXT = (ROOT / "render.yaml").read_text()
BLUEPRINT: dict[str, Any] = yaml.safe_load(TEXT)
VARIABLES = {name for field in Settings.model_fields for name in variable_names(field)}
SECRETS = {
    name
    for field, info in Settings.model_fields.items()
    if "SecretStr" in repr(info.annotation)
    for name in variable_names(field)
}


def addition() -> list[dict[str, Any]]:
    """The services of the commented block for the async pattern, uncommented."""
    block = re.search(r"\n((?:#   .*\n|#\n)+)\Z", TEXT)
    assert block is not None, "render.yaml: the commented worker block is missing"
    lines = [line.removeprefix("#").removeprefix("   ") for line in block[1].splitlines()]
    services: list[dict[str, Any]] = yaml.safe_load("\n".join(lines))
    return services


def web() -> dict[str, Any]:
    services: list[dict[str, Any]] = [s for s in BLUEPRINT["services"] if s["type"] == "web"]
    assert len(services) == 1
    return services[0]


def test_the_web_service_builds_the_dockerfile() -> None:
    service = web()
    assert service["runtime"] == "docker"
    assert (ROOT / service["dockerfilePath"]).is_file()
    assert (ROOT / service["dockerContext"]).is_dir()
    # The image's own command serves and reads Render's PORT; no override.
    assert "dockerCommand" not in service


def test_the_health_check_is_a_route_of_the_app() -> None:
    routes = {
        route.path
        for route in create_app(make_settings()).routes
        if isinstance(route, APIRoute) and "GET" in (route.methods or set())
    }
    assert web()["healthCheckPath"] in routes


def test_variables_are_settings_and_secrets_are_never_values() -> None:
    for service in [*BLUEPRINT["services"], *addition()]:
        for variable in service.get("envVars", []):
            assert variable["key"] in VARIABLES, variable["key"]
            if variable["key"] in SECRETS:
                assert "value" not in variable, f"{variable['key']}: a secret written in the file"
    by_key = {variable["key"]: variable for variable in web()["envVars"]}
    assert by_key["AGENT_API_KEYS"] == {"key": "AGENT_API_KEYS", "generateValue": True}
    assert by_key["ARIZE_API_KEY"]["sync"] is False


def test_render_starts_the_service_with_settings_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As Render starts it: a generated key (base64 of 256 bits), PORT, and the two prompted
    Arize values left empty."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORT", "10000")
    for variable in web()["envVars"]:
        value = "dGhpcyBpcyBub3QgYSByZWFsIGtleSwganVzdCBhIGJhc2U2NCBvbmU="
        monkeypatch.setenv(
            variable["key"],
            value if variable.get("generateValue") else str(variable.get("value", "")),
        )
    settings = Settings(_env_file=None)
    settings.check_auth_configured()
    settings.check_tracing_configured()
    assert settings.port == 10000
    assert settings.auth_mode in {"any", "bearer", "header"}


def test_the_async_addition_fits_together() -> None:
    services = {service["type"]: service for service in addition()}
    assert set(services) == {"keyvalue", "worker"}
    store, worker = services["keyvalue"], services["worker"]
    # A queue must never evict, and only this account's services reach it.
    assert store["maxmemoryPolicy"] == "noeviction"
    assert store["ipAllowList"] == []
    [redis_url] = worker["envVars"]
    assert redis_url["key"] == "REDIS_URL"
    assert redis_url["fromService"] == {
        "type": "keyvalue",
        "name": store["name"],
        "property": "connectionString",
    }
    # dockerCommand replaces the image's ENTRYPOINT too: the whole command, and a real one.
    program, *arguments = worker["dockerCommand"].split()
    assert program == "agent-endpoint"
    with pytest.raises(SystemExit) as done:
        cli_main([*arguments, "--help"])
    assert done.value.code == 0
    assert worker["dockerfilePath"] == web()["dockerfilePath"]
