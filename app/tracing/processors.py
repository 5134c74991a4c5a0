"""Span processors that make every span of a request safe and findable.

- `RunAttributes` copies the OpenInference context attributes (the run ids under `metadata`,
  and anything the agent adds with `using_attributes`) onto every span that starts inside the
  request, including spans from a plain OpenTelemetry tracer, which OpenInference's own
  tracers would not touch; and the request's Arize space and project, as the attributes
  arize-otel's routing processor routes by (the attributes travel with the span, to wherever
  it is exported from).
- `Scrubbed` wraps an exporting processor and masks secrets before a span leaves: captured
  credential headers, and any configured key found in an attribute or event.
- `AllowedSpaces` wraps arize-otel's routing processor so only allow-listed spaces ever get an
  exporter, and spans without a routable space are dropped quietly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from openinference.instrumentation.context_attributes import CONTEXT_ATTRIBUTES
from openinference.semconv.trace import SpanAttributes
from opentelemetry import context as context_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.util.types import Attributes, AttributeValue

from app.redaction import MASK, Redactor

ARIZE_SPACE_ID = "arize.space_id"  # arize-otel's routing attributes
ARIZE_PROJECT_NAME = "arize.project.name"
# The request's Arize destination, set by app/tracing/request.py once the allow-list said yes.
ROUTE_KEY = context_api.create_key("agent_endpoint.arize_route")
HEADER_ATTRIBUTE_PREFIXES = ("http.request.header.", "http.response.header.")
ALWAYS_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie")


class RunAttributes(SpanProcessor):
    """Stamp the request's OpenInference context attributes on every span at its start."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        stamped = self.stamp(span.attributes, parent_context)
        if stamped:
            span.set_attributes(stamped)

    @staticmethod
    def stamp(existing: Attributes, parent_context: Context | None) -> dict[str, Any]:
        """The attributes `on_start` sets on a span that already has `existing`."""
        ctx = parent_context if parent_context is not None else context_api.get_current()
        existing = existing or {}
        stamped: dict[str, Any] = {}
        route = ctx.get(ROUTE_KEY)
        if isinstance(route, tuple) and ARIZE_SPACE_ID not in existing:
            stamped[ARIZE_SPACE_ID], stamped[ARIZE_PROJECT_NAME] = route
        for key in CONTEXT_ATTRIBUTES:
            value = ctx.get(key)  # a Context is a dict: no API call per key on every span
            if value is None:
                continue
            theirs = existing.get(key)
            if theirs is None:
                stamped[key] = value
            elif key == SpanAttributes.METADATA:
                stamped[key] = _merge_metadata(value, theirs)
        return stamped


def _merge_metadata(ours: object, theirs: AttributeValue) -> str:
    """The span's own metadata wins on shared keys; the run ids fill in the rest."""
    try:
        merged = {**json.loads(str(ours)), **json.loads(str(theirs))}
    except (TypeError, ValueError):
        return str(theirs)
    return json.dumps(merged, ensure_ascii=False)


class Scrubbed(SpanProcessor):
    """Forward spans to `inner` with secrets masked (runs before any exporter sees a span)."""

    def __init__(self, inner: SpanProcessor, redact: Redactor, headers: Iterable[str]) -> None:
        self.inner = inner
        self._redact = redact
        names = {*ALWAYS_SECRET_HEADERS, *(name.lower() for name in headers)}
        # Instrumentors name captured headers http.request.header.<name>, '-' as '_'.
        self._header_keys = frozenset(
            prefix + variant
            for prefix in HEADER_ATTRIBUTE_PREFIXES
            for name in names
            for variant in {name, name.replace("-", "_")}
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(self.scrub(span))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def scrub(self, span: ReadableSpan) -> ReadableSpan:
        attributes = self._clean(span.attributes)
        events = [self._clean_event(event) for event in span.events]
        if attributes is None and all(
            new is old for new, old in zip(events, span.events, strict=True)
        ):
            return span
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes if attributes is not None else span.attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _clean_event(self, event: Event) -> Event:
        attributes = self._clean(event.attributes)
        if attributes is None:
            return event
        return Event(event.name, attributes, event.timestamp)

    def _clean(self, attributes: Attributes) -> dict[str, AttributeValue] | None:
        """A cleaned copy, or None when nothing needed masking (the common case)."""
        if not attributes:
            return None
        cleaned: dict[str, AttributeValue] | None = None
        for key, value in attributes.items():
            new = self._mask(value) if key in self._header_keys else self._clean_value(value)
            if new is not value:
                if cleaned is None:
                    cleaned = dict(attributes)
                cleaned[key] = new
        return cleaned

    @staticmethod
    def _mask(value: AttributeValue) -> AttributeValue:
        return tuple(MASK for _ in value) if isinstance(value, tuple | list) else MASK

    def _clean_value(self, value: AttributeValue) -> AttributeValue:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, tuple | list) and any(isinstance(item, str) for item in value):
            items: list[Any] = [self._redact(v) if isinstance(v, str) else v for v in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                return tuple(items)
        return value


class AllowedSpaces(SpanProcessor):
    """Let arize-otel's routing processor see only spans bound for an allow-listed space.

    The request code puts a space into the routing context only when it is allowed; this
    wrapper also stops spans whose agent set `arize.space_id` itself, and spares arize-otel's
    per-span warning for spans that have no space (a local call without `arize_metadata`).
    """

    def __init__(self, inner: SpanProcessor, allowed: Iterable[str]) -> None:
        self.inner = inner
        allowed = set(allowed)
        self._any = "*" in allowed
        self._allowed = frozenset(allowed - {"*"})

    def allows(self, space_id: object) -> bool:
        return (
            isinstance(space_id, str)
            and bool(space_id.strip())  # an empty or blank id is no space, even for `*`
            and (self._any or space_id in self._allowed)
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        preset = _space_of(span.attributes)
        if preset is None or self.allows(preset):
            self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.allows(_space_of(span.attributes)):
            self.inner.on_end(span)

    # arize-otel 0.14's ArizeRoutingSpanProcessor.shutdown() is `all(p.shutdown() for p in
    # per-space processors)`, and BatchSpanProcessor.shutdown() returns None: it stops after
    # the first space, and the other spaces' queued spans are never sent. So each per-space
    # processor is flushed and shut down here (found by tests/test_trace_export.py).

    def _per_space(self) -> list[SpanProcessor]:
        processors: dict[str, SpanProcessor] = getattr(self.inner, "_processors", {})
        return list(processors.values())

    def shutdown(self) -> None:
        for processor in self._per_space():
            processor.shutdown()
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        results = [processor.force_flush(timeout_millis) for processor in self._per_space()]
        return all(results)


def _space_of(attributes: Mapping[str, object] | None) -> object:
    return attributes.get(ARIZE_SPACE_ID) if attributes else None
