"""Finished spans as plain tuples: the form they cross the pipe to the export process in.

A flat span is a tuple of built-in values that pickle copes with quickly, in this order:

    name, context, parent, kind, start, end, status code, status description, attributes,
    events [(name, attributes, timestamp)], links [(context, attributes)],
    scope (name, version, schema_url) or None, resource

Contexts are tuples too (`context_tuple`). The resource is the `Resource` object while the span
waits in the batch queue; `ExportProcess` swaps it for an index into the batch's table of
resource attributes, so each resource crosses the pipe once per batch.

The request span (`light_span`) builds its tuple straight from its own fields; any other
span is a `ReadableSpan` first (`flatten`). The child turns the tuples back into
`ReadableSpan`s (`rebuild`) for the exporting processors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

Flat = tuple[Any, ...]
RESOURCE = 12  # the last field: a Resource in the queue, an index in the batch sent


def context_tuple(context: SpanContext | None) -> Flat | None:
    if context is None:
        return None
    state = context.trace_state
    return (
        context.trace_id,
        context.span_id,
        context.is_remote,
        int(context.trace_flags),
        state.to_header() if state else "",
    )


def span_context(flat: Flat | None) -> SpanContext | None:
    if flat is None:
        return None
    trace_id, span_id, is_remote, flags, state = flat
    return SpanContext(
        trace_id,
        span_id,
        is_remote=is_remote,
        trace_flags=TraceFlags(flags),
        trace_state=TraceState.from_header([state]) if state else TraceState(),
    )


def scope_tuple(scope: InstrumentationScope | None) -> Flat | None:
    return (scope.name, scope.version, scope.schema_url) if scope else None


def flatten(span: ReadableSpan) -> Flat:
    """Any finished SDK span as a flat span (its resource still an object)."""
    status = span.status
    events, links = span.events, span.links  # each a fresh tuple: read once
    return (
        span.name,
        context_tuple(span.context),
        context_tuple(span.parent),
        span.kind.value,
        span.start_time,
        span.end_time,
        status.status_code.value,
        status.description,
        dict(span.attributes or {}),
        [(e.name, dict(e.attributes or {}), e.timestamp) for e in events] if events else [],
        [(context_tuple(k.context), dict(k.attributes or {})) for k in links] if links else [],
        scope_tuple(span.instrumentation_scope),
        span.resource,
    )


def rebuild(flat: Flat, resources: Sequence[Resource]) -> ReadableSpan:
    """The ReadableSpan of a flat span whose resource is an index into `resources`."""
    (name, context, parent, kind, start, end, status, description, attributes, events, links,
     scope, resource) = flat  # fmt: skip
    return ReadableSpan(
        name=name,
        context=span_context(context),
        parent=span_context(parent),
        resource=resources[resource],
        attributes=attributes,
        events=[Event(event_name, attrs, timestamp) for event_name, attrs, timestamp in events],
        links=[Link(span_context(ctx), attrs) for ctx, attrs in links],  # type: ignore[arg-type]
        kind=SpanKind(kind),
        status=Status(StatusCode(status), description),
        start_time=start,
        end_time=end,
        instrumentation_scope=InstrumentationScope(*scope) if scope else None,
    )
