"""The span exporters `OTEL_TRACES_EXPORTER` chooses, and the masking they all sit behind.

Shared by both pipelines (app/tracing/pipeline.py) and the fast pipeline's export process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from app.settings import Settings
from app.tracing.processors import AllowedSpaces

log = logging.getLogger("agent_endpoint")

OTLP_HTTP_PATH = "/v1/traces"
# How a span exporter gets its batching: the SDK's BatchSpanProcessor, or a stand-in in tests.
BatchFactory = Callable[[SpanExporter], SpanProcessor]


def secret_headers(settings: Settings) -> list[str]:
    """Request headers `Scrubbed` masks wherever an instrumentor captured them."""
    return [settings.api_key_header, *settings.required_headers]


def exporting_processors(
    settings: Settings, batch: BatchFactory = BatchSpanProcessor
) -> list[SpanProcessor]:
    chosen = settings.exporters
    processors: list[SpanProcessor] = []
    if "otlp" in chosen:
        processors.append(batch(otlp_exporter(settings)))
    if "console" in chosen:
        processors.append(batch(ConsoleSpanExporter()))
    if "arize" in chosen:
        processors.append(arize_routing(settings))
    if chosen:
        log.info("exporting spans to: %s", ", ".join(sorted(chosen)))
    return processors


def otlp_exporter(settings: Settings) -> SpanExporter:
    """OTLP over HTTP or gRPC; headers, timeout and TLS come from the standard OTEL_* variables."""
    endpoint = settings.otlp_endpoint
    if settings.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint, insecure=_is_plain_http(endpoint))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=traces_url(endpoint) if endpoint else None)


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP posts to <base>/v1/traces; accept the base, .../v1 or the full URL."""
    base = endpoint.rstrip("/")
    if base.endswith(OTLP_HTTP_PATH):
        return base
    if base.endswith("/v1"):
        return base + "/traces"
    return base + OTLP_HTTP_PATH


def _is_plain_http(endpoint: str | None) -> bool | None:
    if endpoint is None:
        return None  # the exporter decides from OTEL_EXPORTER_OTLP_INSECURE
    return endpoint.startswith("http://")


def arize_routing(settings: Settings) -> AllowedSpaces:
    """arize-otel's per-space routing, restricted to ARIZE_SPACE_ALLOWLIST."""
    assert settings.arize_api_key is not None  # noqa: S101 - Settings.check_tracing_configured
    # Imported here: arize-otel loads gRPC, which only Arize export needs (~20 MiB of memory).
    from arize.otel import ArizeRoutingSpanProcessor, Transport  # noqa: PLC0415

    endpoint = settings.arize_collector_endpoint
    transport = Transport.GRPC
    if settings.arize_transport == "http":
        transport, endpoint = Transport.HTTP, traces_url(endpoint)
    routing = ArizeRoutingSpanProcessor(
        api_key=settings.arize_api_key.get_secret_value(),
        endpoint=endpoint,
        transport=transport,
        batch=True,
    )
    return AllowedSpaces(routing, settings.arize_space_allowlist)
