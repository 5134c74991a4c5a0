"""The run's top-level span, owned by the coordinator as Arize owns it.

Each row gets one `experiment_run` span; the `traceparent` sent to the endpoint is this span's
context, so the endpoint's request span becomes its child. Exported over OTLP/HTTP (to a local
Phoenix, say), the whole tree shows up: run span → request span → the agent's spans, instead of
a subtree whose parent never arrives.

Phoenix files a whole trace under the project of the first span of it that arrives, and the
endpoint exports its spans under its own project (AGENT_TRACE_PROJECT), usually before the run
span (which ends last). So, before each request, the run span's first child, `send` (the body
about to be sent), is exported at once, synchronously: the trace then lives in the coordinator's
project (with `--phoenix`, the experiment's own), where Phoenix looks for the experiment's traces,
and the endpoint's spans join it there.
"""

from __future__ import annotations

import asyncio
import json
import threading
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
# The run span's attributes its `send` span repeats: the body, and the run ids.
SEND_ATTRIBUTES = ("openinference.span.kind", "input.value", "input.mime_type", "metadata")


def otlp_provider(endpoint: str, project_name: str | None) -> TracerProvider:
    """A provider exporting in batches over OTLP/HTTP to `endpoint` (…/v1/traces)."""
    provider = TracerProvider(resource=_resource(project_name))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def _resource(project_name: str | None) -> Resource:
    return Resource.create(
        {
            "service.name": "arize-coordinator-standin",
            "openinference.project.name": project_name or "default",
        }
    )


class RunSpans:
    """Starts one span per run and writes its W3C context into the request headers.

    With `endpoint` (the provider's OTLP/HTTP endpoint) each run's `send` span is exported on
    its own before the request goes out (see the module's docstring); its own provider has no
    processor, so the batch never exports it a second time.
    """

    def __init__(
        self,
        provider: TracerProvider,
        endpoint: str | None = None,
        project_name: str | None = None,
    ) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("coordinator")
        self._first: tuple[Any, OTLPSpanExporter, threading.Lock] | None = None
        if endpoint is not None:
            bare = TracerProvider(resource=_resource(project_name))
            exporter = OTLPSpanExporter(endpoint=endpoint)
            self._first = (bare.get_tracer("coordinator"), exporter, threading.Lock())

    def shutdown(self) -> None:
        """Export the spans still batched, then close the exporters."""
        self._provider.shutdown()
        if self._first is not None:
            self._first[1].shutdown()  # type: ignore[no-untyped-call]

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
            yield RunSpan(span, self._first, {k: attributes[k] for k in SEND_ATTRIBUTES})


class RunSpan:
    def __init__(
        self,
        span: Span,
        first: tuple[Any, OTLPSpanExporter, threading.Lock] | None = None,
        send_attributes: dict[str, Any] | None = None,
    ) -> None:
        self.span = span
        self._first = first
        self._send_attributes = send_attributes or {}
        context = span.get_span_context()
        self.trace_id = format(context.trace_id, "032x")
        self.span_id = format(context.span_id, "016x")

    async def announce(self) -> None:
        """Export the run's `send` span now, so its trace is filed under this project."""
        if self._first is None:
            return
        tracer, exporter, lock = self._first
        send = tracer.start_span(
            "send",
            context=set_span_in_context(self.span),
            attributes=self._send_attributes,
        )
        send.end()

        def export() -> None:
            with lock:  # one exporter (one HTTP session) shared by the workers
                exporter.export([send])

        await asyncio.to_thread(export)

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
