"""examples/langgraph_agent.py: the offline LangGraph agent, served by the real app."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.entrypoint import load_agent
from app.main import create_app
from examples.langgraph_agent import ScriptedChatModel, get_weather, run
from tests.conftest import AUTH, METADATA, client_for, envelope, make_settings

ENTRYPOINT = "examples.langgraph_agent:run"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(make_settings(), agent=run)) as http:
        yield http


async def invoke(client: httpx.AsyncClient, goal: str, **config: Any) -> dict[str, Any]:
    body = envelope(goal, config=config) if config else envelope(goal)
    response = await client.post("/invoke", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    output: dict[str, Any] = response.json()
    return output


def weather(city: str) -> dict[str, Any]:
    result: dict[str, Any] = get_weather.invoke({"city": city})
    return result


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("goal", "city"),
    [
        ("What's the weather in Lisbon today?", "Lisbon"),
        ("Plan a 3-day trip to Tokyo", "Tokyo"),
        ("Should I pack an umbrella for New York?", "New York"),
    ],
)
async def test_calls_the_tool_for_the_city_in_the_goal(
    client: httpx.AsyncClient, goal: str, city: str
) -> None:
    output = await invoke(client, goal)
    forecast = weather(city)
    assert output["tool_calls"] == [
        {"name": "get_weather", "arguments": {"city": city}, "result": forecast}
    ]
    assert output["final_response"] == (
        f"Today in {city}: {forecast['sky']}, with a high of {forecast['high_c']}°C."
    )
    assert output["turns"] == 2  # asked for the tool, then answered from its result
    assert output["stop_reason"] == "answered"
    assert output["model"] == "scripted-chat-model"


@pytest.mark.anyio
async def test_same_input_same_output_and_the_model_from_config(
    client: httpx.AsyncClient,
) -> None:
    first = await invoke(client, "Weather in Paris?", model="claude-haiku-4-5")
    again = await invoke(client, "Weather in Paris?", model="claude-haiku-4-5")
    assert again == first
    assert first["model"] == "claude-haiku-4-5"


@pytest.mark.anyio
async def test_asks_for_a_city_without_calling_a_tool(client: httpx.AsyncClient) -> None:
    output = await invoke(client, "what's the weather like?")
    assert output["tool_calls"] == []
    assert output["final_response"] == "Which city should I check the weather for?"
    assert output["turns"] == 1


@pytest.mark.anyio
async def test_max_turns_large_enough_for_the_answer(client: httpx.AsyncClient) -> None:
    output = await invoke(client, "Weather in Tokyo?", max_turns=2)
    assert output["stop_reason"] == "answered"
    assert output["turns"] == 2
    assert output["final_response"].startswith("Today in Tokyo:")


@pytest.mark.anyio
async def test_max_turns_too_small_returns_the_partial_run(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Cut off, the row still gets a result: no answer, the tool calls so far, and why."""
    with caplog.at_level(logging.WARNING, logger="agent"):
        output = await invoke(client, "Weather in Tokyo?", max_turns=1)
    assert output["final_response"] is None
    assert output["stop_reason"] == "max_turns"
    assert output["turns"] == 1
    assert [call["arguments"] for call in output["tool_calls"]] == [{"city": "Tokyo"}]
    assert "stopped at max_turns=1" in caplog.text


@pytest.mark.anyio
async def test_one_turn_is_enough_for_a_direct_answer(client: httpx.AsyncClient) -> None:
    output = await invoke(client, "what's the weather like?", max_turns=1)
    assert output["stop_reason"] == "answered"
    assert output["final_response"] == "Which city should I check the weather for?"


def test_scripted_model_calls_tools_only_when_bound() -> None:
    question = [HumanMessage("Is it sunny in Mexico City?")]
    plain = ScriptedChatModel().invoke(question)
    assert plain.tool_calls == []
    assert isinstance(plain.content, str)
    assert plain.content.startswith("Which city")

    reply = ScriptedChatModel(model_name="gpt-test").bind_tools([get_weather]).invoke(question)
    assert isinstance(reply, AIMessage)
    assert [(call["name"], call["args"]) for call in reply.tool_calls] == [
        ("get_weather", {"city": "Mexico City"})
    ]
    assert reply.response_metadata == {"model_name": "gpt-test", "finish_reason": "tool_calls"}
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["total_tokens"] > 0


def test_entrypoint_loads() -> None:
    agent = load_agent(ENTRYPOINT)
    assert agent.name == ENTRYPOINT
    assert agent.is_async


@pytest.mark.anyio
async def test_served_through_agent_entrypoint() -> None:
    app = create_app(make_settings(entrypoint=ENTRYPOINT))
    async with client_for(app) as http:
        ready = await http.get("/readyz")
        output = await invoke(http, "Weather in Lisbon?")
    assert ready.json()["agent"] == ENTRYPOINT
    assert output["tool_calls"][0]["arguments"] == {"city": "Lisbon"}


@pytest.mark.anyio
async def test_llm_and_tool_spans_nest_under_the_request_span_with_the_run_ids(
    client: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    trace_id, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    response = await client.post(
        "/invoke",
        json=envelope("Plan a 3-day trip to Tokyo"),
        headers={**AUTH, "traceparent": f"00-{trace_id}-{caller_span}-01"},
    )
    assert response.status_code == 200
    spans = exported.get_finished_spans()
    kinds = [str((span.attributes or {}).get("openinference.span.kind")) for span in spans]
    assert kinds.count("AGENT") == 1
    assert kinds.count("LLM") == 2  # the tool call, then the answer
    assert kinds.count("TOOL") == 1
    parents = {span.context.span_id: span.parent for span in spans if span.context}
    (root,) = [span for span in spans if span.parent and span.parent.is_remote]
    assert root.context is not None
    assert f"{root.parent.span_id:016x}" == caller_span  # type: ignore[union-attr]
    for span in spans:
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" == trace_id
        metadata = json.loads(str((span.attributes or {})["metadata"]))
        assert {key: metadata[key] for key in METADATA} == METADATA
        # every span reaches the request span through its parents
        current = span.context.span_id
        while current != root.context.span_id:
            parent = parents[current]
            assert parent is not None
            current = parent.span_id
