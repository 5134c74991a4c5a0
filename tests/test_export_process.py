"""The fast pipeline's span export from a child process: spans cross the pipe intact and reach
a real receiver."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from app.main import create_app
from app.redaction import Redactor
from app.tracing import build_tracer_provider
from app.tracing.fast.export_process import ExportProcess, packed
from app.tracing.fast.flat_span import rebuild
from app.tracing.fast.light_span import LightSpans
from app.tracing.pipeline import request_spans_of
from tests.conftest import AUTH, KEY, client_for, envelope, make_settings
from tests.live import live_server
from tests.otlp_receiver import OtlpReceiver
from tests.patience import scaled

REMOTE = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("rojo", "00f067aa0ba902b7")]),
)
# How long a flush may take: the child starts a Python process first, which a busy machine slows.
FLUSH_MILLIS = int(scaled(10) * 1000)


def varied_spans() -> tuple[ReadableSpan, ...]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "s", "k": 1}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("scope", "1.2", schema_url="https://example.test/schema")
    parent = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    with tracer.start_as_current_span(
        "root",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"s": "v", "i": 3, "f": 1.5, "b": True, "list": ("a", "b")},
        links=[Link(REMOTE, {"why": "because"})],
    ) as root:
        root.add_event("note", {"n": 1})
        root.set_status(Status(StatusCode.ERROR, "broke"))
        with tracer.start_as_current_span("child"):
            pass
    return memory.get_finished_spans()


def fast_provider(**overrides: Any) -> TracerProvider:
    return build_tracer_provider(make_settings(trace_pipeline="fast", **overrides), Redactor([KEY]))


def shipper_of(provider: TracerProvider) -> object:
    spans = request_spans_of(provider)
    assert isinstance(spans, LightSpans)
    return spans.processors.shipper


def as_json(span: ReadableSpan) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(span.to_json())
    return loaded


def test_a_span_crosses_the_pipe_intact() -> None:
    spans = varied_spans()
    table, flat = packed(spans)
    assert len(table) == 1  # the resource once per batch
    rebuilt = [rebuild(item, [Resource(attributes) for attributes in table]) for item in flat]
    assert [as_json(span) for span in rebuilt] == [as_json(span) for span in spans]
    root = next(span for span in rebuilt if span.name == "root")
    assert root.parent == REMOTE
    assert root.instrumentation_scope == spans[-1].instrumentation_scope


def test_spans_reach_the_collector_through_the_child_process() -> None:
    receiver = OtlpReceiver()
    with live_server(receiver.app) as collector:
        provider = fast_provider(otlp_endpoint=collector)
        tracer = provider.get_tracer("t")
        with (
            tracer.start_as_current_span("parent", attributes={"leak": f"key {KEY}"}),
            tracer.start_as_current_span("child"),
        ):
            pass
        assert provider.force_flush(FLUSH_MILLIS)  # the child flushed and said so
        spans = {span.name: span for span in receiver.spans()}
        provider.shutdown()
    assert set(spans) == {"parent", "child"}
    assert spans["child"].parent_id == spans["parent"].span_id
    assert spans["parent"].attributes["leak"] == "key [redacted]"  # masked in the child
    assert spans["parent"].resource["service.name"] == "agent-endpoint"


@pytest.mark.anyio
async def test_the_request_span_reaches_the_collector_as_a_flat_tuple() -> None:
    receiver = OtlpReceiver()
    with live_server(receiver.app) as collector:
        settings = make_settings(trace_pipeline="fast", otlp_endpoint=collector)
        provider = build_tracer_provider(settings, Redactor([KEY]))
        assert shipper_of(provider) is not None  # the export process alone: the shortcut
        tracer = provider.get_tracer("agent")

        async def agent(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
            with tracer.start_as_current_span("inner-step"):
                return "done"

        app = create_app(settings, agent=agent, tracer_provider=provider)
        async with client_for(app) as client:
            response = await client.post("/invoke", json=envelope(f"key {KEY}"), headers=AUTH)
        assert response.status_code == 200
        assert provider.force_flush(FLUSH_MILLIS)
        spans = {span.name: span for span in receiver.spans()}
        provider.shutdown()
    (request,) = (span for span in spans.values() if span.parent_id is None)
    assert spans["inner-step"].parent_id == request.span_id  # an SDK span, flattened as usual
    assert request.attributes["openinference.span.kind"] == "AGENT"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["output.value"] == '"done"'
    run_ids = json.loads(request.attributes["metadata"])
    assert run_ids["run_id"] == envelope()["arize_metadata"]["run_id"]
    assert "key [redacted]" in request.attributes["input.value"]  # masked in the child
    assert KEY not in json.dumps(request.attributes)
    assert request.resource["service.name"] == "agent-endpoint"


def test_any_other_processor_turns_the_shortcut_off() -> None:
    provider = build_tracer_provider(
        make_settings(trace_pipeline="fast", otlp_endpoint="http://127.0.0.1:9"),
        Redactor([KEY]),
        SimpleSpanProcessor(InMemorySpanExporter()),
    )
    assert shipper_of(provider) is None
    provider.shutdown()


@pytest.mark.parametrize("nice", [0, 10])
def test_the_child_runs_at_the_configured_niceness(nice: int) -> None:
    exporter = ExportProcess(make_settings(traces_exporter=["console"], export_nice=nice), [KEY])
    assert exporter.export(varied_spans()).name == "SUCCESS"
    assert exporter.force_flush(FLUSH_MILLIS)  # the child is past its set-up
    assert exporter._child is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, exporter._child.pid) == min(ours + nice, 19)
    exporter.shutdown()


def test_a_dead_child_drops_spans_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    exporter = ExportProcess(make_settings(traces_exporter=["console"]), [KEY])
    spans = varied_spans()
    assert exporter.export(spans).name == "SUCCESS"
    assert exporter._child is not None
    exporter._child.kill()
    exporter._child.wait()
    with caplog.at_level(logging.ERROR, logger="agent_endpoint"):
        results = [exporter.export(spans).name for _ in range(3)]
    assert "FAILURE" in results
    assert sum("span export process is gone" in r.getMessage() for r in caplog.records) == 1
    exporter.shutdown()


def test_the_console_exporter_prints_to_the_services_stdout(
    capfd: pytest.CaptureFixture[str],
) -> None:
    provider = fast_provider(traces_exporter=["console"])
    assert shipper_of(provider) is not None  # through the export process
    with provider.get_tracer("t").start_as_current_span("printed-span"):
        pass
    assert provider.force_flush(FLUSH_MILLIS)
    provider.shutdown()
    assert '"name": "printed-span"' in capfd.readouterr().out
