"""THE file you edit: your agent. This folder, `agent/`, is yours: the input schema and presets
beside it describe what the agent takes, and the template's `copier update` never touches it.

The service calls `run(input, ctx)` once per dataset row:
- `input` is the body you templated in Arize (the same dict whether Arize sent it flat or
  wrapped), already checked against `agent/input_schema.json`;
- `ctx` carries `ctx.config` (`input["config"]`, filled by presets), `ctx.metadata` (Arize's ids),
  `ctx.logger`, `ctx.time_left()` and `ctx.cancelled`.
Return anything JSON-serializable (a dict, a list, a pydantic model): Arize stores it verbatim.
`run` may be `async def` (runs on the event loop) or a plain `def` (runs in a thread pool).

This example is a small trip-planning agent that needs no API key and answers the same input
with the same output: a rule-based "model" decides which tool to call next, and the answer
shows every tool call, as a real agent's would. Replace the body of `run` with your own agent
(LangGraph, OpenAI Agents SDK, plain Python) and keep its signature.

It traces its steps the way an instrumented framework would, with the OpenTelemetry API and
OpenInference's attribute names: the planning step as a CHAIN span, each tool call as a TOOL span,
under the service's request span (which gives them the run ids), so the first trace you open
shows run → request → plan and tools. The spans carry what the agent derived (the city, the days,
the tools' arguments and results), never the goal's text, which AGENT_TRACE_IO=false keeps out.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from typing import Any

from openinference.semconv.trace import OpenInferenceSpanKindValues, SpanAttributes
from opentelemetry import trace

from app.context import AgentContext

tracer = trace.get_tracer(__name__)
KIND = SpanAttributes.OPENINFERENCE_SPAN_KIND

CITIES: dict[str, list[str]] = {
    "tokyo": ["Senso-ji temple", "Tsukiji outer market", "teamLab Planets", "Meiji Shrine"],
    "paris": ["Musée d'Orsay", "Montmartre", "Canal Saint-Martin", "Le Marais"],
    "lisbon": ["Belém Tower", "Alfama", "LX Factory", "Time Out Market"],
    "new york": ["The High Line", "The Met", "Brooklyn Bridge", "Central Park"],
    "mexico city": ["Museo Frida Kahlo", "Chapultepec", "Coyoacán", "Mercado de la Merced"],
}
SKIES = ["sunny", "partly cloudy", "light rain", "clear", "overcast"]
DEFAULT_DAYS = 2
MAX_DAYS = 7
GOAL_CHARS_READ = 2_000


def lookup_city(city: str) -> dict[str, Any]:
    """Tool: what there is to see in a city."""
    return {"city": city.title(), "attractions": CITIES[city]}


def weather_forecast(city: str, day: int) -> dict[str, Any]:
    """Tool: a deterministic stand-in for a weather API."""
    seed = zlib.crc32(f"{city}:{day}".encode())
    return {"day": day, "sky": SKIES[seed % len(SKIES)], "high_c": 14 + seed % 15}


async def run(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """Plans a short city trip with tool calls (an offline example: no model, no API key)."""
    goal: str = input["goal"]
    model = str(ctx.config.get("model", "rule-based-planner"))
    max_turns = int(ctx.config.get("max_turns", 12))
    ctx.logger.info("planning a trip (%d characters of goal)", len(goal))

    tool_calls: list[dict[str, Any]] = []

    def call(
        name: str, arguments: dict[str, Any], tool: Callable[..., dict[str, Any]]
    ) -> dict[str, Any]:
        with tracer.start_as_current_span(
            name,
            attributes={
                KIND: OpenInferenceSpanKindValues.TOOL.value,
                SpanAttributes.TOOL_NAME: name,
                SpanAttributes.TOOL_PARAMETERS: json.dumps(arguments),
                SpanAttributes.INPUT_VALUE: json.dumps(arguments),
                SpanAttributes.INPUT_MIME_TYPE: "application/json",
            },
        ) as span:
            result = tool(**arguments)
            span.set_attribute(SpanAttributes.OUTPUT_VALUE, json.dumps(result, ensure_ascii=False))
            span.set_attribute(SpanAttributes.OUTPUT_MIME_TYPE, "application/json")
        tool_calls.append({"name": name, "arguments": arguments, "result": result})
        return result

    with tracer.start_as_current_span(
        "plan", attributes={KIND: OpenInferenceSpanKindValues.CHAIN.value}
    ) as plan:
        city, days = _plan(goal)
        plan.set_attribute(
            SpanAttributes.OUTPUT_VALUE, json.dumps({"city": city, "days": days, "model": model})
        )
        plan.set_attribute(SpanAttributes.OUTPUT_MIME_TYPE, "application/json")
    if city is None:
        known = ", ".join(name.title() for name in CITIES)
        return {
            "final_response": f"I can plan trips to {known}. Which city should I plan for?",
            "tool_calls": tool_calls,
            "turns": 0,
            "model": model,
        }

    facts = call("lookup_city", {"city": city}, lookup_city)
    forecasts = []
    for day in range(1, days + 1):
        if len(tool_calls) >= max_turns or ctx.cancelled.is_set():
            break
        forecasts.append(call("weather_forecast", {"city": city, "day": day}, weather_forecast))

    lines = [f"{days}-day plan for {facts['city']}:"]
    for day in range(1, days + 1):
        sight = facts["attractions"][(day - 1) % len(facts["attractions"])]
        weather = next((f for f in forecasts if f["day"] == day), None)
        outlook = f" ({weather['sky']}, {weather['high_c']}°C)" if weather else ""
        lines.append(f"Day {day}: {sight}{outlook}")
    if len(forecasts) < days:
        lines.append(f"(stopped after max_turns={max_turns} tool calls)")
    return {
        "final_response": "\n".join(lines),
        "tool_calls": tool_calls,
        "turns": len(tool_calls),
        "model": model,
    }


def _plan(goal: str) -> tuple[str | None, int]:
    """The planning step: which city, how many days (a rule-based stand-in for a model)."""
    # A goal is a sentence: the rules read its start, so a huge goal costs no more than a short
    # one (this agent runs on the event loop; a real one would hand the goal to a model).
    lowered = goal[:GOAL_CHARS_READ].lower()
    city = next((name for name in CITIES if name in lowered), None)
    # Bounded repeats: `(\d+)[\s-]*day` backtracks quadratically on a long run of digits.
    days_match = re.search(r"(\d{1,3})[\s-]{0,3}day", lowered)
    days = min(int(days_match.group(1)), MAX_DAYS) if days_match else DEFAULT_DAYS
    return city, max(days, 1)
