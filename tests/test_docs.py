"""The configuration contract is documented: every setting in .env.example and the README."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import Settings, variable_name
from tests.conftest import make_settings
from tests.live import live_server

ROOT = Path(__file__).parent.parent
VARIABLES = sorted(variable_name(name) for name in Settings.model_fields)


@pytest.mark.parametrize("variable", VARIABLES)
def test_every_setting_is_documented(variable: str) -> None:
    assert f"{variable}=" in (ROOT / ".env.example").read_text()
    assert f"`{variable}`" in (ROOT / "README.md").read_text()


def test_env_example_is_a_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Copying .env.example and filling in a key gives a working configuration."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AGENT_API_KEYS", "a-real-key-0123456789abcdef")
    settings = Settings(_env_file=ROOT / ".env.example")
    settings.check_auth_configured()
    assert settings.timeout_seconds < 120
    assert settings.entrypoint == "agent:run"


def test_readme_curl_example_works() -> None:
    """The first curl example of the README, sent as written to a live server."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"```bash\n(curl .*?)\n```", readme, re.DOTALL)
    assert command is not None
    text = command.group(1)
    url = re.search(r"http://127\.0\.0\.1:\d+(/\S*)", text)  # a generated project: its port
    body = re.search(r"-d '(.*?)'", text, re.DOTALL)
    headers = dict(re.findall(r"-H '([^:]+): ([^']+)'", text))
    assert url is not None
    assert body is not None
    settings = make_settings(api_keys=[], auth_disabled=True)
    with live_server(create_app(settings)) as base:
        response = httpx.post(base + url.group(1), content=body.group(1), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["final_response"].startswith("3-day plan for Tokyo")
    assert json.loads(body.group(1))["arize_metadata"]["run_id"] == "run_1"
