"""The app factory, the operational routes and the OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import AUTH, KEY, AppFactory, client_for, envelope
from tests.processes import run_python

pytestmark = pytest.mark.anyio


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "agent": "agent:run",
        "in_flight": 0,
        "overdue": 0,
    }


async def test_readiness_before_startup_is_503(build_app: AppFactory) -> None:
    app = build_app()
    transport = httpx.ASGITransport(app=app)  # no lifespan: the app has not started
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503


async def test_example_agent_answers_the_seed_request(client: httpx.AsyncClient) -> None:
    body = envelope(config={"model": "claude-sonnet-4-5", "max_turns": 12})
    response = await client.post("/invoke", json=body, headers=AUTH)
    assert response.status_code == 200
    output = response.json()
    assert output["final_response"].startswith("3-day plan for Tokyo:")
    assert [call["name"] for call in output["tool_calls"]] == [
        "lookup_city",
        "weather_forecast",
        "weather_forecast",
        "weather_forecast",
    ]
    assert output["model"] == "claude-sonnet-4-5"
    again = await client.post("/invoke", json=body, headers=AUTH)
    assert again.json() == output  # deterministic


async def test_example_agent_respects_max_turns(client: httpx.AsyncClient) -> None:
    body = envelope("Plan a 5-day trip to Lisbon", config={"max_turns": 2})
    output = (await client.post("/invoke", json=body, headers=AUTH)).json()
    assert output["turns"] == 2
    assert "stopped after max_turns=2" in output["final_response"]


async def test_example_agent_asks_for_an_unknown_city(client: httpx.AsyncClient) -> None:
    output = (await client.post("/invoke", json=envelope("Plan a trip"), headers=AUTH)).json()
    assert output["tool_calls"] == []
    assert "Which city" in output["final_response"]


async def test_unknown_route_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.post("/run", json=envelope(), headers=AUTH)
    wrong_method = await client.get("/invoke")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no route POST /run; the agent is at POST /invoke"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "method_not_allowed"


async def test_invoke_path_is_configurable(build_app: AppFactory) -> None:
    async with client_for(build_app(invoke_path="/agents/planner")) as client:
        moved = await client.post("/agents/planner", json=envelope(), headers=AUTH)
        old = await client.post("/invoke", json=envelope(), headers=AUTH)
        spec = (await client.get("/openapi.json")).json()
    assert (moved.status_code, old.status_code) == (200, 404)
    assert "/agents/planner" in spec["paths"]


async def test_openapi_shows_both_body_shapes_with_examples(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/invoke"]["post"]["requestBody"]["content"]["application/json"]
    examples = body["examples"]
    assert examples["flat"]["value"]["goal"] == "Plan a 3-day trip to Tokyo"
    assert examples["wrapped"]["value"]["input"]["goal"] == "Plan a 3-day trip to Tokyo"
    assert set(examples["flat"]["value"]["arize_metadata"]) >= {
        "dataset_id",
        "experiment_id",
        "run_id",
        "example_id",
        "space_id",
    }
    flat, wrapped = body["schema"]["anyOf"]
    assert flat["required"] == ["goal"]
    assert "arize_metadata" in flat["properties"]
    assert wrapped["properties"]["input"]["required"] == ["goal"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_openapi_shows_only_the_fixed_shape(build_app: AppFactory) -> None:
    async with client_for(build_app(body_shape="wrapped")) as client:
        spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/invoke"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["title"] == "Wrapped"
    assert list(body["examples"]) == ["wrapped"]


async def test_docs_can_be_turned_off(build_app: AppFactory) -> None:
    async with client_for(build_app(docs_enabled=False)) as client:
        statuses = [(await client.get(p)).status_code for p in ("/docs", "/openapi.json")]
        schema = await client.get("/schema")
    assert statuses == [404, 404]
    assert schema.status_code == 200


def test_importing_the_module_builds_nothing() -> None:
    """`app.main:app` is built on first access; a bare import needs no configuration."""
    code = (
        "import app.main as m, sys; "
        "assert 'app' not in vars(m); "
        "assert 'agent' not in sys.modules; print('ok')"
    )
    result = run_python("-c", code)
    assert result.stdout.strip() == "ok", result.stderr


def test_app_attribute_is_built_from_the_environment(tmp_path: Path) -> None:
    code = (
        "import app.main as m, json; "
        "a = m.app; assert m.app is a; "
        "print(json.dumps([a.state.settings.invoke_path, a.state.runner.agent.name]))"
    )
    result = run_python(
        "-c",
        code,
        cwd=tmp_path,
        env={
            "AGENT_API_KEYS": KEY,
            "AGENT_ENTRYPOINT": "tests.agents:echo",
            "AGENT_INVOKE_PATH": "/x",
        },
    )
    assert json.loads(result.stdout) == ["/x", "tests.agents:echo"], result.stderr


async def test_the_example_agent_reads_a_hostile_goal_in_linear_time(
    client: httpx.AsyncClient,
) -> None:
    """`(\\d+)[\\s-]*day` took 5 s on 20,000 digits (quadratic) on the event loop; 200,000
    would take minutes. The bounded pattern answers at once."""
    goal = "Tokyo " + "1" * 200_000
    response = await client.post("/invoke", json={"goal": goal}, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["final_response"].startswith("2-day plan for Tokyo")
