"""The fast pipeline's request span, without the SDK span's lock and bounded collections.

Every request makes this one span, and on a millisecond endpoint the SDK's `Span` (a lock,
attribute validation on every write, bounded lists) was a large part of what tracing cost per
request (README, "Benchmarks"). One task writes the request span, so this one keeps plain
dicts and lists; limits and attribute cleaning are applied once, when it ends and becomes the
SDK's `ReadableSpan` for the provider's processors, as an SDK span would. With the export
process and nothing else (run-id stamping aside) it skips even that: it hands its fields to
the export batch as the flat tuple the export process takes (`flat_span`,
`ShippedBatches.ship`).

It is used only with providers the fast pipeline built (`provider.build`), whose processors
are known to read spans through the public attributes alone. Spans the agent starts are
ordinary SDK spans, children of this one. Like the SDK's span it keeps W3C's random-trace-id
flag (0x02) of its parent, or sets it for a new trace when the id generator says its ids are
random (`Tracer.start_span` in opentelemetry-sdk 1.45).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from time import time_ns
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import Attributes, AttributeValue

from app.tracing.fast.flat_span import Flat, context_tuple, scope_tuple

SAMPLED = TraceFlags.SAMPLED
RANDOM_TRACE_ID = 0x02  # W3C Trace Context Level 2; TraceFlags.RANDOM_TRACE_ID in newer APIs


class LightSpan(trace.Span):
    __slots__ = (
        "_context",
        "_end",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_start",
        "_starter",
        "_status",
        "attributes",
    )

    def __init__(  # noqa: PLR0917 - built in one place, LightSpans.start
        self,
        starter: LightSpans,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
    ) -> None:
        self._starter = starter
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self.attributes = attributes
        self._events: list[Event] = []
        self._links: list[Link] = []
        self._status = Status(StatusCode.UNSET)
        self._start = time_ns()
        self._end: int | None = None

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Values are checked as the SDK checks them (invalid ones are dropped, with a log)."""
        if self._end is None:
            limits = self._starter.limits
            self.attributes.update(
                BoundedAttributes(
                    limits.max_span_attributes,
                    attributes,
                    max_value_len=limits.max_span_attribute_length,
                )
            )

    def record(self, attributes: Mapping[str, AttributeValue]) -> None:
        """For this service's own attributes, known to be valid: no check on the request path."""
        if self._end is None:
            self.attributes.update(attributes)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end is None:
            self._events.append(Event(name, attributes, timestamp or time_ns()))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if self._end is None and context.is_valid:
            self._links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return  # an OK status is final, as in the SDK
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module, name = kind.__module__, kind.__qualname__
        event: dict[str, AttributeValue] = {
            "exception.type": f"{module}.{name}" if module and module != "builtins" else name,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time or time_ns()
        self._starter.ended(self)

    def _bounded(self, limit: int | None) -> dict[str, Any]:
        if limit is None or len(self.attributes) <= limit:
            return self.attributes
        return dict(list(self.attributes.items())[:limit])

    def _bounded_events(self) -> list[Event]:
        if not self._events:
            return []
        limits = self._starter.limits
        return [
            Event(
                event.name,
                BoundedAttributes(
                    limits.max_event_attributes,
                    event.attributes,
                    max_value_len=limits.max_attribute_length,
                ),
                event.timestamp,
            )
            for event in self._events[: limits.max_events]
        ]

    def flat(self) -> Flat:
        """This ended span as `flat_span` lays it out, the limits applied as in `readable`."""
        limits = self._starter.limits
        status = self._status
        links = self._links[: limits.max_links]
        return (
            self._name,
            context_tuple(self._context),
            context_tuple(self._parent),
            self._kind.value,
            self._start,
            self._end,
            status.status_code.value,
            status.description,
            self._bounded(limits.max_span_attributes),
            [(e.name, dict(e.attributes or {}), e.timestamp) for e in self._bounded_events()],
            [(context_tuple(k.context), dict(k.attributes or {})) for k in links],
            self._starter.scope_flat,
            self._starter.provider.resource,
        )

    def readable(self) -> ReadableSpan:
        """This ended span as the SDK's processors take it."""
        limits = self._starter.limits
        return ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=self._starter.provider.resource,
            # Checked on the way in (set_attributes) or ours (record, and the start attributes,
            # which app/tracing/request.py builds); only the count limit is left to apply.
            attributes=self._bounded(limits.max_span_attributes),
            events=self._bounded_events(),
            links=self._links[: limits.max_links],
            kind=self._kind,
            status=self._status,
            start_time=self._start,
            end_time=self._end,
            instrumentation_scope=self._starter.scope,
        )


class Processors(Protocol):
    """The provider's span processors (`provider.ProviderProcessors`).

    `shipper`, when set, takes an ended span's flat tuple in place of running `on_end`.
    """

    shipper: Callable[[Flat], None] | None

    def start_light(self, span: LightSpan, parent_context: Context) -> None: ...

    def on_end(self, span: ReadableSpan) -> None: ...


class LightSpans:
    """Starts light spans on an SDK provider: its sampler, id generator and processors."""

    def __init__(self, provider: TracerProvider, processors: Processors, scope_name: str) -> None:
        self.provider = provider
        self.processors = processors
        self.scope = InstrumentationScope(scope_name)
        self.scope_flat = scope_tuple(self.scope)
        self.limits = SpanLimits()
        random = getattr(provider.id_generator, "is_trace_id_random", None)
        self._random_ids = bool(random()) if callable(random) else False

    def start(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], ctx: Context
    ) -> trace.Span:
        """Like `Tracer.start_span` without `context=`: the parent is the span in `ctx`."""
        parent = trace.get_current_span(ctx).get_span_context()
        ids = self.provider.id_generator
        if parent.is_valid:
            trace_id, random = parent.trace_id, parent.trace_flags & RANDOM_TRACE_ID
        else:
            trace_id, random = ids.generate_trace_id(), self._random_ids
        sampled = self.provider.sampler.should_sample(ctx, trace_id, name, kind, attributes)
        flags = SAMPLED if sampled.decision.is_sampled() else 0  # type: ignore[no-untyped-call]
        context = SpanContext(
            trace_id,
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags | RANDOM_TRACE_ID if random else flags),
            trace_state=sampled.trace_state,
        )
        if not sampled.decision.is_recording():  # type: ignore[no-untyped-call]
            return trace.NonRecordingSpan(context)
        if sampled.attributes:
            attributes = {**attributes, **sampled.attributes}
        span = LightSpan(self, name, context, parent if parent.is_valid else None, kind, attributes)
        self.processors.start_light(span, ctx)
        return span

    @staticmethod
    def record(span: trace.Span, attributes: Mapping[str, Any]) -> None:
        """The request code's own attributes, known to be valid: no check per value."""
        if isinstance(span, LightSpan):
            span.record(attributes)
        else:
            span.set_attributes(attributes)

    def ended(self, span: LightSpan) -> None:
        ship = self.processors.shipper
        if ship is None:
            self.processors.on_end(span.readable())
        elif span.get_span_context().trace_flags.sampled:  # as BatchSpanProcessor.on_end
            ship(span.flat())
