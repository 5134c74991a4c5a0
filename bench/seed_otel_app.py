"""A reference point for tracing: the seed app with the stock FastAPIInstrumentor.

`uvicorn bench.seed_otel_app:app` serves bench/seed_app.py's app, instrumented the way
OpenTelemetry's docs show, with spans batch-exported over OTLP/HTTP. The exporter and resource
read the standard variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...) that
bench/invoke.py sets, like this project's app. Measured next to the seed without tracing, it
shows what stock instrumentation costs, the figure this project's own tracing is held against.
The SDK flushes the spans still queued when the process exits.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bench.seed_app import app

provider = TracerProvider()  # its resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)

__all__ = ["app"]
