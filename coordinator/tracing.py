"""The run's top-level span, owned by the coordinator as Arize owns it.

Each row gets one `experiment_run` span; the `traceparent` sent to the endpoint is this span's
context, so the endpoint's request span becomes its child. Exported over OTLP/HTTP (to a local
Phoenix, say), the whole tree shows up: run span → request span → the agent's spans, instead of
a subtree whose parent never arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

MAX_VALUE_CHARS = 4096
PROPAGATOR = TraceContextTextMapPropagator()


def otlp_provider(endpoint: str, project_name: str | None) -> TracerProvider:
    """A provider exporting in batches over OTLP/HTTP to `endpoint` (…/v1/traces)."""
    resource = Resource.create(
        {
            "service.name": "arize-coordinator-standin",
            "openinference.project.name": project_name or "default",
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


class RunSpans:
    """Starts one span per run and writes its W3C context into the request headers."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer = provider.get_tracer("coordinator")

    @contextmanager
    def run(self, metadata: dict[str, Any], request: Any) -> Iterator[RunSpan]:
        attributes = {
            "openinference.span.kind": "CHAIN",
            "input.value": _capped(request),
            "input.mime_type": "application/json",
            "metadata": json.dumps(metadata),
            **{f"arize.{key}": value for key, value in metadata.items()},
        }
        with self._tracer.start_as_current_span(
            "experiment_run", attributes=attributes, record_exception=False
        ) as span:
            assert isinstance(span, Span)  # noqa: S101 - the SDK's tracer makes SDK spans
            yield RunSpan(span)


class RunSpan:
    def __init__(self, span: Span) -> None:
        self.span = span
        context = span.get_span_context()
        self.trace_id = format(context.trace_id, "032x")
        self.span_id = format(context.span_id, "016x")

    def inject(self, headers: dict[str, str]) -> None:
        """Set `traceparent` (and `tracestate`, if any) to this span's context."""
        PROPAGATOR.inject(headers, context=set_span_in_context(self.span))

    def finish(self, status: int | None, response: Any, error: dict[str, Any] | None) -> None:
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
        if response is not None:
            self.span.set_attribute("output.value", _capped(response))
            self.span.set_attribute("output.mime_type", "application/json")
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, str(error.get("kind"))))


def _capped(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:MAX_VALUE_CHARS]
