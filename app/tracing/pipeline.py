"""The tracer provider, chosen by settings: the SDK's pipeline, or the opt-in fast one.

The default (`AGENT_TRACE_PIPELINE=sdk`) is the OpenTelemetry SDK's pipeline as its
documentation builds it: a `TracerProvider`, `RunAttributes` stamping the run ids, then one
`BatchSpanProcessor` per exporter of `OTEL_TRACES_EXPORTER` (`app.tracing.exporters`;
arize-otel's routing processor for Arize), each wrapped in `Scrubbed` so secrets are masked
before a span leaves the process. Every piece is a public SDK class or a `SpanProcessor`, so
an SDK upgrade changes it only as the SDK's release notes say. It costs a millisecond agent
more than the fast pipeline (exporting, 0.45x of the bare example's throughput against 0.84x
on an idle machine; 0.75x against 1.14x in a run on a loaded one: README "Benchmarks"); a real
agent spends seconds per row, where neither shows.

`AGENT_TRACE_PIPELINE=fast` asks `app.tracing.fast` (imported only then) for its provider; it
returns None, after saying why in the log, when this SDK version lacks what it relies on, and
the SDK pipeline is built instead.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

from openinference.semconv.resource import ResourceAttributes
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind

from app.redaction import Redactor
from app.settings import Settings
from app.tracing.exporters import BatchFactory, exporting_processors, secret_headers
from app.tracing.processors import RunAttributes, Scrubbed

log = logging.getLogger("agent_endpoint")

SCOPE = "agent-endpoint"  # the instrumentation scope of the request span


class RequestSpans(Protocol):
    """Starts request spans some other way than `Tracer.start_span` (the fast pipeline's)."""

    def start(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], ctx: Context
    ) -> Span: ...

    def record(self, span: Span, attributes: Mapping[str, Any]) -> None: ...


# Providers that already carry our processors: never add them twice.
_EQUIPPED: weakref.WeakSet[TracerProvider] = weakref.WeakSet()
# Providers the fast pipeline built, with its request spans.
_REQUEST_SPANS: weakref.WeakKeyDictionary[TracerProvider, RequestSpans] = (
    weakref.WeakKeyDictionary()
)


def resource_of(settings: Settings) -> Resource:
    return Resource.create(
        {
            SERVICE_NAME: settings.service_name,
            ResourceAttributes.PROJECT_NAME: settings.trace_project,
        }
    )


def build_tracer_provider(
    settings: Settings,
    redact: Redactor,
    *extra: SpanProcessor,
    batch: BatchFactory = BatchSpanProcessor,
) -> TracerProvider:
    """A provider with the run-attribute stamping, the configured exporters, then `extra`.

    `batch` wraps each exporter of the fast pipeline's (the SDK pipeline's exporters always get
    the SDK's `BatchSpanProcessor`); tests pass one that lacks what the fast pipeline needs.
    """
    resource = resource_of(settings)
    if settings.trace_pipeline == "fast":
        from app.tracing import fast  # noqa: PLC0415 - the opt-in, loaded only when chosen

        built = fast.build(settings, redact, resource, SCOPE, extra, batch=batch)
        if built is not None:
            provider, spans = built
            _EQUIPPED.add(provider)
            _REQUEST_SPANS[provider] = spans
            return provider
    provider = TracerProvider(resource=resource)
    add_processors(provider, settings, redact, *extra)
    return provider


def request_spans_of(provider: object) -> RequestSpans | None:
    """The fast pipeline's request spans for a provider it built; None for any other."""
    return _REQUEST_SPANS.get(provider) if isinstance(provider, TracerProvider) else None


def add_processors(
    provider: TracerProvider, settings: Settings, redact: Redactor, *extra: SpanProcessor
) -> None:
    """Run ids first; then the exporters, each behind the masking; then `extra`."""
    _EQUIPPED.add(provider)
    provider.add_span_processor(RunAttributes())
    for processor in (*exporting_processors(settings), *extra):
        provider.add_span_processor(Scrubbed(processor, redact, secret_headers(settings)))


def install_tracer_provider(
    settings: Settings, redact: Redactor, current: trace.TracerProvider | None = None
) -> tuple[trace.TracerProvider, bool]:
    """The process-wide provider: ours, the one the agent's module registered, or none.

    Returns the provider and whether we own it (and so shut it down). Agents that call
    `phoenix.otel.register()` or `logfire.configure()` at import keep their provider; our
    processors are added to it so run ids and scrubbing still apply (the SDK pipeline: the fast
    one only serves providers it built). With no exporter configured, nothing would leave the
    process, so no span is recorded at all: the API's no-op provider stays (the caller's trace
    context still reaches `ctx.trace_headers()`).
    """
    current = current or trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        if current not in _EQUIPPED:
            log.info("using the OpenTelemetry tracer provider the agent registered")
            if settings.trace_pipeline == "fast":
                log.info("AGENT_TRACE_PIPELINE=fast needs a provider of its own: SDK pipeline")
            add_processors(current, settings, redact)
        return current, False
    if not settings.exporters:
        log.info("no span exporter configured (see OTEL_TRACES_EXPORTER): spans are not recorded")
        return current, False
    provider = build_tracer_provider(settings, redact)
    trace.set_tracer_provider(provider)
    return provider, True
