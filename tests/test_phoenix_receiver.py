"""The `phoenix` fixture is a real OTLP receiver: spans sent by the plain OTel SDK read back intact.

Both transports the app may be pointed at are covered: OTLP/HTTP (protobuf) on Phoenix's HTTP port
at /v1/traces, and OTLP/gRPC on its gRPC port.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from tests.phoenix import Phoenix

ExporterFor = Callable[[Phoenix], SpanExporter]

EXPORTERS: dict[str, ExporterFor] = {
    "http": lambda phoenix: HttpSpanExporter(endpoint=phoenix.otlp_http_endpoint, timeout=10),
    "grpc": lambda phoenix: GrpcSpanExporter(
        endpoint=phoenix.otlp_grpc_endpoint, insecure=True, timeout=10
    ),
}


@pytest.mark.parametrize("transport", sorted(EXPORTERS))
def test_spans_sent_over_otlp_read_back_from_phoenix(phoenix: Phoenix, transport: str) -> None:
    project = f"receiver-{transport}-{uuid.uuid4().hex[:12]}"
    provider = TracerProvider(resource=Resource.create({"openinference.project.name": project}))
    provider.add_span_processor(SimpleSpanProcessor(EXPORTERS[transport](phoenix)))
    tracer = provider.get_tracer(__name__)
    try:
        with (
            tracer.start_as_current_span(
                "parent", attributes={"openinference.span.kind": "AGENT", "run.id": "run_1"}
            ) as parent,
            tracer.start_as_current_span(
                "child", attributes={"openinference.span.kind": "TOOL", "run.id": "run_1"}
            ) as child,
        ):
            pass
    finally:
        provider.shutdown()

    spans = phoenix.spans(project, expected=2)

    trace_id = format_trace_id(parent.get_span_context().trace_id)
    parent_id = format_span_id(parent.get_span_context().span_id)
    child_id = format_span_id(child.get_span_context().span_id)
    by_name = {span["name"]: span for span in spans}
    assert sorted(by_name) == ["child", "parent"]
    assert {span["context"]["trace_id"] for span in spans} == {trace_id}
    assert by_name["parent"]["context"]["span_id"] == parent_id
    assert by_name["parent"]["parent_id"] is None
    assert by_name["child"]["context"]["span_id"] == child_id
    assert by_name["child"]["parent_id"] == parent_id
    assert by_name["parent"]["span_kind"] == "AGENT"
    assert by_name["child"]["span_kind"] == "TOOL"
    assert by_name["child"]["attributes"]["run.id"] == "run_1"
