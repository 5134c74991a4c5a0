"""The light request span ends as the same ReadableSpan an SDK span would, for the same calls."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from app.exporters import build_tracer_provider, processors_of
from app.flat_span import RESOURCE, flatten
from app.light_span import LightSpan, LightSpans
from app.main import create_app
from app.redaction import Redactor
from tests.conftest import AUTH, KEY, client_for, envelope, make_settings

PARENT = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
LINKED = SpanContext(0x123, 0x456, is_remote=False, trace_flags=TraceFlags(1))


def exercise(span: trace.Span) -> None:
    span.set_attribute("one", 1)
    span.set_attributes({"two": "2", "list": ["a", "b"], "bad": {"not": "allowed"}})
    span.add_event("note", {"n": 1}, timestamp=5)
    span.add_link(LINKED, {"why": "because"})
    span.update_name("renamed")
    try:
        raise ValueError("boom")  # noqa: TRY301 - a real traceback for the event
    except ValueError as exc:
        span.record_exception(exc, {"extra": "x"}, timestamp=6)
    span.set_status(Status(StatusCode.ERROR, "failed"))
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR)  # OK is final
    span.end(end_time=9)
    span.set_attribute("after-end", True)  # ignored once ended


def normalised(span: ReadableSpan) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(span.to_json())
    for key in ("context", "start_time"):
        data.pop(key)
    for event in data["events"]:
        event["attributes"].pop("exception.stacktrace", None)
    return data


def started_light(provider: TracerProvider) -> tuple[LightSpan, Context]:
    """A light span under PARENT, started as the request span is; and its parent context."""
    processors = processors_of(provider)
    assert processors is not None
    parent = trace.set_span_in_context(trace.NonRecordingSpan(PARENT), Context())
    light = LightSpans(provider, processors, "agent-endpoint").start(
        "span", SpanKind.SERVER, {"start": "attr"}, parent
    )
    assert isinstance(light, LightSpan)
    return light, parent


def test_the_same_calls_give_the_same_exported_span() -> None:
    memory = InMemorySpanExporter()
    provider = build_tracer_provider(make_settings(), Redactor([KEY]), SimpleSpanProcessor(memory))
    light, parent = started_light(provider)
    exercise(light)
    sdk = provider.get_tracer("agent-endpoint").start_span(
        "span", context=parent, kind=SpanKind.SERVER, attributes={"start": "attr"}
    )
    exercise(sdk)
    ours, theirs = memory.get_finished_spans()
    assert normalised(ours) == normalised(theirs)
    assert ours.parent == PARENT
    assert ours.context is not None
    assert ours.context.trace_id == PARENT.trace_id
    assert ours.context.span_id != PARENT.span_id


def test_its_flat_tuple_is_its_readable_span_flattened() -> None:
    provider = build_tracer_provider(make_settings(), Redactor([KEY]))
    light, _ = started_light(provider)
    exercise(light)
    flat = light.flat()
    assert flat == flatten(light.readable())
    assert flat[RESOURCE] is provider.resource
    assert len(flat[9]) == 2  # the note and the exception events
    provider.shutdown()


def test_the_sampler_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    memory = InMemorySpanExporter()
    provider = build_tracer_provider(make_settings(), Redactor([KEY]), SimpleSpanProcessor(memory))
    processors = processors_of(provider)
    assert processors is not None
    span = LightSpans(provider, processors, "s").start("x", SpanKind.SERVER, {}, Context())
    assert not span.is_recording()
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    assert memory.get_finished_spans() == ()


def test_a_provider_built_elsewhere_has_no_fast_path() -> None:
    assert processors_of(trace.get_tracer_provider()) is not None  # the tests' own, built here
    assert processors_of(trace.NoOpTracerProvider()) is None


@pytest.mark.anyio
async def test_the_request_span_the_agent_sees_is_light() -> None:
    seen: list[str] = []

    async def agent(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        seen.append(type(ctx.span).__name__)
        return "ok"

    async with client_for(create_app(make_settings(), agent=agent)) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.status_code == 200
    assert seen == ["LightSpan"]
