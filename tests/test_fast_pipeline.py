"""The opt-in fast pipeline: its light request span ends as the same ReadableSpan an SDK span
would, for the same calls; and where the SDK lacks what it relies on, it steps aside."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from app.main import create_app
from app.redaction import Redactor
from app.settings import Settings
from app.tracing import build_tracer_provider
from app.tracing.fast.flat_span import RESOURCE, flatten
from app.tracing.fast.light_span import LightSpan, LightSpans
from app.tracing.pipeline import request_spans_of
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


def fast_settings(**overrides: Any) -> Settings:
    return make_settings(trace_pipeline="fast", **overrides)


def light_spans(provider: TracerProvider) -> LightSpans:
    spans = request_spans_of(provider)
    assert isinstance(spans, LightSpans)
    return spans


def started_light(provider: TracerProvider) -> tuple[LightSpan, Context]:
    """A light span under PARENT, started as the request span is; and its parent context."""
    parent = trace.set_span_in_context(trace.NonRecordingSpan(PARENT), Context())
    light = light_spans(provider).start("span", SpanKind.SERVER, {"start": "attr"}, parent)
    assert isinstance(light, LightSpan)
    return light, parent


def test_the_same_calls_give_the_same_exported_span() -> None:
    memory = InMemorySpanExporter()
    provider = build_tracer_provider(fast_settings(), Redactor([KEY]), SimpleSpanProcessor(memory))
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
    provider = build_tracer_provider(fast_settings(), Redactor([KEY]))
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
    provider = build_tracer_provider(fast_settings(), Redactor([KEY]), SimpleSpanProcessor(memory))
    span = light_spans(provider).start("x", SpanKind.SERVER, {}, Context())
    assert not span.is_recording()
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    assert memory.get_finished_spans() == ()


def test_only_a_provider_the_fast_pipeline_built_has_light_spans() -> None:
    fast = build_tracer_provider(fast_settings(), Redactor([KEY]))
    assert request_spans_of(fast) is not None
    assert request_spans_of(build_tracer_provider(make_settings(), Redactor([KEY]))) is None
    assert request_spans_of(trace.get_tracer_provider()) is None  # the tests' own: SDK
    assert request_spans_of(trace.NoOpTracerProvider()) is None


@pytest.mark.parametrize("flags", ["01", "03"])
def test_the_random_trace_id_flag_is_kept_as_the_sdk_keeps_it(flags: str) -> None:
    memory = InMemorySpanExporter()
    provider = build_tracer_provider(fast_settings(), Redactor([KEY]), SimpleSpanProcessor(memory))
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())
    light = light_spans(provider).start("light", SpanKind.SERVER, {}, parent)
    sdk = provider.get_tracer("t").start_span("sdk", context=parent)
    assert light.get_span_context().trace_flags == sdk.get_span_context().trace_flags
    assert light.get_span_context().trace_flags == int(flags, 16)
    new_trace = light_spans(provider).start("new", SpanKind.SERVER, {}, Context())
    assert new_trace.get_span_context().trace_flags.random_trace_id  # random ids: the SDK's
    for span in (light, sdk, new_trace):
        span.end()


@pytest.mark.anyio
async def test_the_request_span_the_agent_sees_is_light() -> None:
    seen: list[str] = []

    async def agent(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        seen.append(type(ctx.span).__name__)
        return "ok"

    settings = fast_settings()
    provider = build_tracer_provider(settings, Redactor([KEY]))
    app = create_app(settings, agent=agent, tracer_provider=provider)
    async with client_for(app) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.status_code == 200
    assert seen == ["LightSpan"]


# -- an SDK without what the fast pipeline relies on: a warning, and the SDK pipeline


class NoQueue(SimpleSpanProcessor):
    """A batch processor of an SDK version without `_batch_processor.emit`."""


class NoSampler(TracerProvider):
    """A provider class without the `sampler` the light span asks."""

    def __getattribute__(self, name: str) -> Any:
        if name == "sampler":
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("parts", "missing"),
    [
        ({"batch": NoQueue}, "NoQueue._batch_processor.emit"),
        ({"provider_class": NoSampler}, "TracerProvider.sampler"),
    ],
    ids=["batch-processor", "provider"],
)
async def test_without_the_sdk_internals_it_needs_it_warns_and_the_sdk_pipeline_runs(
    caplog: pytest.LogCaptureFixture, parts: dict[str, Any], missing: str
) -> None:
    from app.tracing import fast  # noqa: PLC0415 - the entry point, with stand-in SDK classes
    from app.tracing.fast.provider import sdk_version  # noqa: PLC0415

    settings = fast_settings(traces_exporter=["console"])
    redact = Redactor([KEY])
    resource = Resource.create({})
    with caplog.at_level(logging.WARNING, logger="agent_endpoint"):
        built = fast.build(
            settings, redact, resource, "s", (), **{"batch": BatchSpanProcessor, **parts}
        )
    assert built is None
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert "AGENT_TRACE_PIPELINE=fast is off" in message
    assert f"opentelemetry-sdk {sdk_version()}" in message
    assert missing in message
    assert "SDK pipeline" in message

    # Through the service: the same warning, then SDK spans end to end.
    memory = InMemorySpanExporter()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agent_endpoint"):
        provider = build_tracer_provider(
            settings, redact, SimpleSpanProcessor(memory), batch=NoQueue
        )
    assert any("AGENT_TRACE_PIPELINE=fast is off" in r.getMessage() for r in caplog.records)
    assert request_spans_of(provider) is None
    seen: list[type[trace.Span]] = []

    async def agent(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        seen.append(type(ctx.span))
        return "ok"

    app = create_app(settings, agent=agent, tracer_provider=provider)
    async with client_for(app) as client:
        response = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert response.status_code == 200
    (kind,) = seen
    assert issubclass(kind, SdkSpan)  # the SDK's own span
    (span,) = memory.get_finished_spans()
    assert (span.attributes or {})["openinference.span.kind"] == "AGENT"
    provider.shutdown()
