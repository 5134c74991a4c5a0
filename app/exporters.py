"""Where spans go: the tracer provider and its exporters, chosen by settings.

`OTEL_TRACES_EXPORTER` lists them (otlp, arize, console, none). Every exporting processor
batches, and is wrapped so secrets are masked before a span leaves the process. arize-otel's
routing processor sends each span to the Arize space of its request; see `app/tracing.py` for
how a request picks its space.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

from openinference.semconv.resource import ResourceAttributes
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from app.export_process import ShippedBatches
from app.flat_span import Flat
from app.redaction import Redactor
from app.settings import Settings
from app.span_processors import AllowedSpaces, RunAttributes, Scrubbed

log = logging.getLogger("agent_endpoint")

OTLP_HTTP_PATH = "/v1/traces"
SDK_BATCH_LOGGER = "opentelemetry.sdk._shared_internal"
# Providers that already carry our processors: never add them twice.
_EQUIPPED: weakref.WeakSet[TracerProvider] = weakref.WeakSet()


class ProviderProcessors(SynchronousMultiSpanProcessor):
    """The processors of a provider built here, and the request span's shortcut through them.

    `shipper` is set while the processors are just the run-id stamping and the export
    process's batching (the default set-up): the request span can then hand its flat tuple
    straight to the batch (`ShippedBatches.ship`), since `RunAttributes` does nothing at a
    span's end. Any other processor added (a test's in-memory exporter, `extra`) clears it.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.members: tuple[SpanProcessor, ...] = ()
        self.shipper: Callable[[Flat], None] | None = None

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.members += (span_processor,)
        others = [m for m in self.members if not isinstance(m, RunAttributes)]
        only = others[0] if len(others) == 1 else None
        self.shipper = only.ship if isinstance(only, ShippedBatches) else None


# Providers built here, with the processor list they run (the request span's fast path).
_PROCESSORS: weakref.WeakKeyDictionary[TracerProvider, ProviderProcessors] = (
    weakref.WeakKeyDictionary()
)


def build_tracer_provider(
    settings: Settings, redact: Redactor, *extra: SpanProcessor
) -> TracerProvider:
    """A provider with the run-attribute stamping, the configured exporters, then `extra`."""
    resource = Resource.create(
        {
            SERVICE_NAME: settings.service_name,
            ResourceAttributes.PROJECT_NAME: settings.trace_project,
        }
    )
    processors = ProviderProcessors()
    provider = TracerProvider(resource=resource, active_span_processor=processors)
    _PROCESSORS[provider] = processors
    add_processors(provider, settings, redact, *extra)
    return provider


def processors_of(provider: object) -> ProviderProcessors | None:
    """The span processors of a provider this module built (None for any other provider)."""
    return _PROCESSORS.get(provider) if isinstance(provider, TracerProvider) else None


def add_processors(
    provider: TracerProvider, settings: Settings, redact: Redactor, *extra: SpanProcessor
) -> None:
    """Run ids first; then the exporters, here or in the export process; then `extra`."""
    _EQUIPPED.add(provider)
    # A full batch queue (a collector down, or the export process behind) makes the SDK log a
    # warning for every span it drops, which costs every request a log record. The exporters'
    # own warnings ("Transient error ... retrying") already say what is wrong.
    logging.getLogger(SDK_BATCH_LOGGER).setLevel(logging.ERROR)
    provider.add_span_processor(RunAttributes())
    exporting: list[SpanProcessor] = []
    if settings.export_process and settings.exporters:
        # Masking and the exporters run in the child, on the spans shipped there.
        provider.add_span_processor(ShippedBatches(settings, redact.secrets))
    else:
        exporting = exporting_processors(settings)
    for processor in (*exporting, *extra):
        provider.add_span_processor(Scrubbed(processor, redact, secret_headers(settings)))


def secret_headers(settings: Settings) -> list[str]:
    return [settings.api_key_header, *settings.required_headers]


def install_tracer_provider(
    settings: Settings, redact: Redactor, current: trace.TracerProvider | None = None
) -> tuple[trace.TracerProvider, bool]:
    """The process-wide provider: ours, the one the agent's module registered, or none.

    Returns the provider and whether we own it (and so shut it down). Agents that call
    `phoenix.otel.register()` or `logfire.configure()` at import keep their provider; our
    processors are added to it so run ids and scrubbing still apply. With no exporter
    configured, nothing would leave the process, so no span is recorded at all: the API's
    no-op provider stays (the caller's trace context still reaches `ctx.trace_headers()`).
    """
    current = current or trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        if current not in _EQUIPPED:
            log.info("using the OpenTelemetry tracer provider the agent registered")
            add_processors(current, settings, redact)
        return current, False
    if not settings.exporters:
        log.info("no span exporter configured (see OTEL_TRACES_EXPORTER): spans are not recorded")
        return current, False
    provider = build_tracer_provider(settings, redact)
    trace.set_tracer_provider(provider)
    return provider, True


def exporting_processors(settings: Settings) -> list[SpanProcessor]:
    chosen = settings.exporters
    processors: list[SpanProcessor] = []
    if "otlp" in chosen:
        processors.append(BatchSpanProcessor(otlp_exporter(settings)))
    if "console" in chosen:
        processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
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
