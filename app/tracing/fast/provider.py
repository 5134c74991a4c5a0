"""The fast pipeline's provider: its processors, the request span's shortcut, the SDK check.

`build` is the pipeline's one entry point (re-exported by `app.tracing.fast`). It returns None,
after a WARNING that names the SDK version and what is missing, when this SDK lacks what the
pipeline relies on beyond the SDK's public API: then `app.tracing.pipeline` builds the SDK
pipeline, which needs none of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider

from app.redaction import Redactor
from app.settings import Settings
from app.tracing.exporters import BatchFactory, exporting_processors, secret_headers
from app.tracing.fast.export_process import SDK_BATCH_LOGGER, ExportProcess, ShippedBatches
from app.tracing.fast.flat_span import Flat
from app.tracing.fast.light_span import LightSpan, LightSpans
from app.tracing.processors import RunAttributes, Scrubbed

log = logging.getLogger("agent_endpoint")

# What LightSpans reads from the provider (public attributes of the SDK's TracerProvider, but
# not of the API's interface: another provider class may lack them).
PROVIDER_NEEDS = ("sampler", "id_generator", "resource")


class ProviderProcessors(SynchronousMultiSpanProcessor):
    """The processors of a provider built here, and the request span's shortcut through them.

    `shipper` is set while the processors are just the run-id stamping and the export
    process's batching: the request span can then hand its flat tuple straight to the batch
    (`ShippedBatches.ship`), since `RunAttributes` does nothing at a span's end. Any other
    processor added (a test's in-memory exporter, `extra`) clears it.
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

    def start_light(self, span: LightSpan, parent_context: Context) -> None:
        """`on_start` for the request span: the run ids recorded without a check per value."""
        for member in self.members:
            if isinstance(member, RunAttributes):
                stamped = member.stamp(span.attributes, parent_context)
                if stamped:
                    span.record(stamped)
            else:
                member.on_start(span, parent_context=parent_context)  # type: ignore[arg-type]


def sdk_version() -> str:
    try:
        return version("opentelemetry-sdk")
    except PackageNotFoundError:  # pragma: no cover - installed with the app
        return "(unknown version)"


def build(
    settings: Settings,
    redact: Redactor,
    resource: Resource,
    scope: str,
    extra: Sequence[SpanProcessor],
    *,
    batch: BatchFactory,
    provider_class: Callable[..., TracerProvider] = TracerProvider,
) -> tuple[TracerProvider, LightSpans] | None:
    """The fast pipeline's provider and request spans, or None when this SDK cannot carry it.

    `batch` and `provider_class` are the SDK's classes; tests pass stand-ins that lack what
    the pipeline needs, to see it step aside.
    """
    processors = ProviderProcessors()
    provider = provider_class(resource=resource, active_span_processor=processors)
    missing = [f"TracerProvider.{name}" for name in PROVIDER_NEEDS if not hasattr(provider, name)]
    shipped: ShippedBatches | None = None
    if settings.export_process and settings.exporters:
        exporter = ExportProcess(settings, redact.secrets)
        queue = batch(exporter)
        ship = getattr(getattr(queue, "_batch_processor", None), "emit", None)
        if callable(ship):
            shipped = ShippedBatches(queue, exporter, ship)
        else:
            missing.append(f"{type(queue).__name__}._batch_processor.emit")
            queue.shutdown()
    if missing:
        if shipped is not None:
            shipped.shutdown()
        log.warning(
            "AGENT_TRACE_PIPELINE=fast is off: opentelemetry-sdk %s has no %s, which it relies "
            "on; spans go through the SDK pipeline (AGENT_TRACE_PIPELINE=sdk) instead",
            sdk_version(),
            ", ".join(missing),
        )
        return None
    provider.add_span_processor(RunAttributes())
    headers = secret_headers(settings)
    if shipped is not None:
        # Masking and the exporters run in the child, on the spans shipped there.
        logging.getLogger(SDK_BATCH_LOGGER).setLevel(logging.ERROR)
        provider.add_span_processor(shipped)
    else:
        for processor in exporting_processors(settings):
            provider.add_span_processor(Scrubbed(processor, redact, headers))
    for processor in extra:
        provider.add_span_processor(Scrubbed(processor, redact, headers))
    return provider, LightSpans(provider, processors, scope)
