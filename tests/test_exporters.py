"""Where spans go: exporters chosen by settings, and Arize routing through the real app."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import context as context_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpExporter,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import ProxyTracerProvider

from app.main import create_app
from app.redaction import Redactor
from app.tracing.exporters import exporting_processors, otlp_exporter, traces_url
from app.tracing.pipeline import add_processors, build_tracer_provider, install_tracer_provider
from app.tracing.processors import AllowedSpaces
from tests import agents
from tests.conftest import AUTH, KEY, METADATA, client_for, make_settings
from tests.live import live_server
from tests.otlp_receiver import OtlpReceiver

ARIZE_KEY = "ak-arize-test-key-0123456789abcdef"


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://127.0.0.1:6006", "http://127.0.0.1:6006/v1/traces"),
        ("http://127.0.0.1:6006/", "http://127.0.0.1:6006/v1/traces"),
        ("https://otlp.arize.com/v1", "https://otlp.arize.com/v1/traces"),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
    ],
)
def test_the_otlp_http_url_is_completed(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


def test_otlp_over_http_posts_to_v1_traces() -> None:
    exporter = otlp_exporter(make_settings(otlp_endpoint="http://127.0.0.1:6006"))
    assert isinstance(exporter, HttpExporter)
    assert exporter._endpoint == "http://127.0.0.1:6006/v1/traces"
    exporter.shutdown()  # type: ignore[no-untyped-call]


def test_otlp_over_grpc() -> None:
    settings = make_settings(otlp_endpoint="http://127.0.0.1:4317", otlp_protocol="grpc")
    exporter = otlp_exporter(settings)
    assert isinstance(exporter, GrpcExporter)
    exporter.shutdown()


def test_each_chosen_exporter_gets_a_batch_processor() -> None:
    settings = make_settings(
        traces_exporter=["console", "otlp", "arize"],
        otlp_endpoint="http://127.0.0.1:6006",
        arize_api_key=ARIZE_KEY,
        arize_space_allowlist=["a"],
    )
    otlp, console, arize = exporting_processors(settings)
    assert isinstance(console, BatchSpanProcessor)
    assert isinstance(console.span_exporter, ConsoleSpanExporter)
    assert isinstance(otlp, BatchSpanProcessor)
    assert isinstance(otlp.span_exporter, HttpExporter)
    assert isinstance(arize, AllowedSpaces)
    for processor in (console, otlp, arize):
        processor.shutdown()
    assert exporting_processors(make_settings(traces_exporter=["none"])) == []


def test_a_provider_the_agent_registered_gets_run_ids_and_our_exporters_mask() -> None:
    """Run ids reach every exporter of the agent's provider; masking is in the exporters this
    service adds (a processor cannot act before the ones registered ahead of it): theirs see
    the span as the agent recorded it, as the README says."""
    theirs_memory, ours_memory = InMemorySpanExporter(), InMemorySpanExporter()
    theirs = TracerProvider()
    theirs.add_span_processor(SimpleSpanProcessor(theirs_memory))
    provider, owned = install_tracer_provider(make_settings(), Redactor([KEY]), theirs)
    assert (provider, owned) == (theirs, False)
    install_tracer_provider(make_settings(), Redactor([KEY]), theirs)  # not equipped twice
    other = TracerProvider()
    other.add_span_processor(SimpleSpanProcessor(theirs_memory))
    add_processors(other, make_settings(), Redactor([KEY]), SimpleSpanProcessor(ours_memory))
    token = context_api.attach(context_api.set_value("metadata", json.dumps({"run_id": "r"})))
    try:
        for registered in (theirs, other):
            with registered.get_tracer("t").start_as_current_span("s") as span:
                span.set_attribute("llm.prompt", f"call with Authorization: Bearer {KEY}")
    finally:
        context_api.detach(token)
    spans = [*theirs_memory.get_finished_spans(), *ours_memory.get_finished_spans()]
    assert len(spans) == 3
    for exported in spans:
        assert json.loads(str((exported.attributes or {})["metadata"])) == {"run_id": "r"}
    (masked,) = ours_memory.get_finished_spans()
    assert (masked.attributes or {})["llm.prompt"] == "call with Authorization: Bearer [redacted]"


@pytest.mark.anyio
async def test_arize_routing_sends_each_request_to_its_space_only(
    caplog: pytest.LogCaptureFixture, pipeline: str
) -> None:
    """In-process: the request span through arize-otel's routing to a real OTLP receiver."""
    receiver = OtlpReceiver()
    with live_server(receiver.app) as collector:
        settings = make_settings(
            input_schema_file="tests/open_schema.json",
            arize_api_key=ARIZE_KEY,
            arize_space_allowlist=["space-a"],
            arize_collector_endpoint=collector,
            arize_transport="http",
            trace_pipeline=pipeline,
        )
        provider = build_tracer_provider(settings, Redactor([KEY, ARIZE_KEY]))
        app = create_app(settings, agent=agents.echo, tracer_provider=provider)
        async with client_for(app) as client:
            for space in ("space-a", "space-x", "space-x"):
                body = {"input": {}, "arize_metadata": {**METADATA, "space_id": space}}
                response = await client.post("/invoke", json=body, headers=AUTH)
                assert response.status_code == 200
            no_metadata = await client.post(
                "/invoke",
                json={"input": {}},
                headers={**AUTH, "baggage": "arize.space_id=space-a"},
            )
            assert no_metadata.status_code == 200
        provider.shutdown()
    spans = receiver.spans()
    assert [span.headers["arize-space-id"] for span in spans] == ["space-a", "space-a"]
    projects = sorted(span.attributes["arize.project.name"] for span in spans)
    assert projects == ["agent-endpoint", "agent-endpoint"]  # AGENT_TRACE_PROJECT by default
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("'space-x' is not in ARIZE_SPACE_ALLOWLIST" in w for w in warnings) == 1


def test_with_no_exporter_nothing_is_recorded() -> None:
    proxy = ProxyTracerProvider()
    provider, owned = install_tracer_provider(make_settings(), Redactor([KEY]), proxy)
    assert (provider, owned) == (proxy, False)  # the API's no-op provider stays
