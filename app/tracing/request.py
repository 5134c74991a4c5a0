"""The request span: continue Arize's trace, route to the caller's space, tag the run.

The order is what makes spans land in Arize under the experiment run:

1. `context.attach(propagate.extract(headers))` continues the caller's trace (`traceparent`,
   `tracestate`) and carries its `baggage`. Missing or invalid headers start a new trace; they
   never fail the request. When a span is already active (FastAPIInstrumentor, logfire), that
   span continued the trace already and ours becomes its child.
2. The run ids go into the OpenInference context attributes (`metadata`), so every span of the
   request carries them, and, with Arize export, the space and project, if
   ARIZE_SPACE_ALLOWLIST allows the space: `RunAttributes` stamps them on every span as the
   `arize.space_id`/`arize.project.name` attributes arize-otel's routing processor routes by
   (the span-attribute form of its `set_routing_context`, which also works where the spans are
   exported from another process).
3. The AGENT span starts *without* a `context=` argument, so it sees all of the above: an SDK
   span from `tracer.start_span` (the default pipeline), or the fast pipeline's light span,
   started on that same context and attached together with it.

The caller's `tracestate` is also kept as it came: W3C Trace Context says a vendor MUST NOT
modify the entries it does not own, and the SDK's `TraceState` re-serialises the header
(optional whitespace and empty members go). While the `traceparent` handed on is the caller's
own (nothing recorded: no exporter, or no span of ours in between), `trace_headers()` hands
the caller's header on byte for byte.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

from fastapi import FastAPI
from openinference.semconv.trace import (
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
)
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as context_api
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from starlette.datastructures import Headers

from app.envelope import RUN_ID_FIELDS, ArizeMetadata
from app.errors import bounded
from app.redaction import Redactor
from app.settings import Settings
from app.tracing.pipeline import SCOPE, RequestSpans, install_tracer_provider, request_spans_of
from app.tracing.processors import ALWAYS_SECRET_HEADERS, ROUTE_KEY

log = logging.getLogger("agent_endpoint")

RUN_ID_KEY = context_api.create_key("agent_endpoint.run_id")
# (span id of the caller's span, its tracestate header as it came)
CALLER_TRACESTATE_KEY = context_api.create_key("agent_endpoint.caller_tracestate")
BAGGAGE_SPACE = "arize.space_id"
BAGGAGE_PROJECT = "arize.project_name"
JSON = OpenInferenceMimeTypeValues.JSON.value
TEXT = OpenInferenceMimeTypeValues.TEXT.value
AGENT = OpenInferenceSpanKindValues.AGENT.value
INPUT_VALUE, INPUT_MIME_TYPE = SpanAttributes.INPUT_VALUE, SpanAttributes.INPUT_MIME_TYPE
OUTPUT_VALUE, OUTPUT_MIME_TYPE = SpanAttributes.OUTPUT_VALUE, SpanAttributes.OUTPUT_MIME_TYPE
STATUS_CODE = "http.response.status_code"
BODY_SHAPE = "agent_endpoint.body_shape"  # flat or wrapped (app/envelope.py)
WARNINGS = "agent_endpoint.warnings"
# Built once: json.dumps() with options builds a new encoder on every call.
INPUT_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
_quoted = encode_basestring_ascii  # a JSON string literal, as json.dumps writes it (C)
MAX_WARNED_SPACES = 1000


class HeaderGetter(Getter[Headers]):
    """Reads propagation headers; several `traceparent` headers are invalid (W3C), so ignored."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = carrier.getlist(key)
        if not values or (key == "traceparent" and len(values) > 1):
            return None
        return values

    def keys(self, carrier: Headers) -> list[str]:
        return list(carrier.keys())


HEADERS = HeaderGetter()


class RequestSpan:
    """The AGENT span of one request, attached as the current span until `end()`.

    Plain calls rather than context managers: this runs on every request, and the request
    path's throughput is measured against a server with no tracing at all (bench/).
    """

    __slots__ = ("_span_token", "_token", "_tracing", "span")

    def __init__(self, tracing: Tracing, span: Span, token: object, span_token: object) -> None:
        self._tracing = tracing
        self.span = span
        self._token = token
        self._span_token = span_token

    def record_output(self, body: bytes, status_code: int = 200) -> None:
        span = self.span
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {STATUS_CODE: status_code}
        if self._tracing.record_io:
            text = body.decode("utf-8", errors="replace")
            attributes.update(self._tracing.io_attributes(OUTPUT_VALUE, OUTPUT_MIME_TYPE, text))
        self._tracing.record(span, attributes)

    def annotate(self, shape: str, warnings: list[str]) -> None:
        """How the body was read, and what was odd about it (never a reason to refuse)."""
        span = self.span
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {BODY_SHAPE: shape}
        if warnings:
            attributes[WARNINGS] = [self._tracing.redact(bounded(text)) for text in warnings]
        self._tracing.record(span, attributes)

    def fail(self, status_code: int, error_type: str, message: str, exc: BaseException) -> None:
        """Mark the span failed; messages are redacted, the span processors mask the rest.

        With AGENT_TRACE_IO=false the message, which may quote the input (a schema violation
        names the offending value), stays out of the span: the status and the exception event
        carry the error type alone, and no stack trace (its last line is the message).
        """
        span = self.span
        span.set_attributes({STATUS_CODE: status_code, "error.type": error_type})
        if not self._tracing.record_io:
            span.set_status(Status(StatusCode.ERROR, error_type))
            span.add_event(
                "exception",
                {"exception.type": type(exc).__name__, "exception.message": error_type},
            )
            return
        message = self._tracing.redact(bounded(message))
        span.set_status(Status(StatusCode.ERROR, message))
        span.record_exception(exc, attributes={"exception.message": message})

    def end(self) -> None:
        self.span.end()
        if self._span_token is not None:
            context_api.detach(self._span_token)  # type: ignore[arg-type]
        context_api.detach(self._token)  # type: ignore[arg-type]


class Tracing:
    """Starts request spans on one tracer; built once per app."""

    def __init__(
        self,
        provider: trace.TracerProvider,
        settings: Settings,
        redact: Redactor,
        span_name: str,
        *,
        allowed_spaces: frozenset[str] | None = None,
        owns_provider: bool = False,
    ) -> None:
        self.provider = provider
        self.owns_provider = owns_provider
        self.tracer = provider.get_tracer(SCOPE)
        # The fast pipeline's request spans, for a provider it built; else SDK spans.
        self._light: RequestSpans | None = request_spans_of(provider)
        self.record = self._light.record if self._light is not None else _set_attributes
        self.redact = redact
        self.record_io = settings.trace_io
        self.max_chars = settings.trace_io_max_chars
        self.span_name = span_name
        self.default_project = settings.trace_project
        # None: no Arize export, so no routing context at all.
        self.allowed_spaces = allowed_spaces
        self._warned: set[str] = set()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        redact: Redactor,
        span_name: str,
        provider: trace.TracerProvider | None = None,
    ) -> Tracing:
        """Use `provider`, or the process-wide one built from the OTEL_* settings."""
        owns = False
        chosen: trace.TracerProvider | None = provider
        if chosen is None:
            chosen, owns = install_tracer_provider(settings, redact)
        allowed = None
        if "arize" in settings.exporters:
            allowed = frozenset(settings.arize_space_allowlist)
        return cls(chosen, settings, redact, span_name, allowed_spaces=allowed, owns_provider=owns)

    def close(self) -> None:
        """Send what the batch processors hold before the process goes."""
        provider = self.provider
        if not isinstance(provider, TracerProvider):
            return  # the API's no-op provider: nothing recorded, nothing to send
        if self.owns_provider:
            provider.shutdown()
        else:
            provider.force_flush()

    def start(
        self,
        headers: Headers,
        metadata: ArizeMetadata | None,
        payload: Any,
        name: str | None = None,
    ) -> RequestSpan:
        """Continue the caller's trace, route, tag the run, start the AGENT span; see above.

        The span is named after the agent unless `name` says otherwise.
        """
        name = name or self.span_name
        current = context_api.get_current()
        outer = trace.get_current_span(current).get_span_context().is_valid
        values: dict[str, object] = {}
        if outer or ("traceparent" not in headers and "baggage" not in headers):
            ctx = current  # nothing to continue (tracestate alone means nothing)
        else:
            ctx = propagate.extract(headers, getter=HEADERS)
            if "tracestate" in headers:
                caller = trace.get_current_span(ctx).get_span_context()
                if caller.is_valid:
                    raw = ",".join(headers.getlist("tracestate"))
                    values[CALLER_TRACESTATE_KEY] = (caller.span_id, raw)
        if metadata is not None:
            values[SpanAttributes.METADATA] = _run_ids(metadata)
            if metadata.run_id is not None:
                values[RUN_ID_KEY] = metadata.run_id
        if self.allowed_spaces is not None and (route := self._route(ctx, metadata)):
            values[ROUTE_KEY] = route
        if values:
            ctx = Context({**ctx, **values})
        attributes: dict[str, Any] = {SpanAttributes.OPENINFERENCE_SPAN_KIND: AGENT}
        kind = SpanKind.INTERNAL if outer else SpanKind.SERVER
        if self._light is not None:
            # A provider built here: the light request span, started on exactly the context
            # attached below with it, so one attach does.
            span = self._light.start(name, kind, attributes, ctx)
            self._record_input(span, payload)
            token = context_api.attach(trace.set_span_in_context(span, ctx))
            return RequestSpan(self, span, token, None)
        token = context_api.attach(ctx)
        span = self.tracer.start_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._record_input(span, payload)
        span_token = context_api.attach(trace.set_span_in_context(span))
        return RequestSpan(self, span, token, span_token)

    def _record_input(self, span: Span, payload: Any) -> None:
        if self.record_io and span.is_recording():  # no encoding when nothing is recorded
            text = payload if isinstance(payload, str) else INPUT_ENCODER.encode(payload)
            self.record(span, self.io_attributes(INPUT_VALUE, INPUT_MIME_TYPE, text))

    def io_attributes(self, value_key: str, mime_key: str, text: str) -> dict[str, Any]:
        mime = JSON
        if len(text) > self.max_chars:
            text = f"{text[: self.max_chars]}… [cut: {len(text)} characters in all]"
            mime = TEXT
        return {value_key: self.redact(text), mime_key: mime}

    def _route(self, ctx: Context, metadata: ArizeMetadata | None) -> tuple[str, str] | None:
        """The allowed (space, project) this request's spans go to, or None."""
        space, project = self._destination(ctx, metadata)
        if space is None or self.allowed_spaces is None:
            return None
        if "*" not in self.allowed_spaces and space not in self.allowed_spaces:
            self._warn_unknown(space)
            return None
        return space, project

    def _destination(self, ctx: Context, metadata: ArizeMetadata | None) -> tuple[str | None, str]:
        """The space and project: `arize_metadata` first, then Arize's baggage."""
        space = metadata.space_id if metadata else None
        project = metadata.project_name if metadata else None
        if not space or not project:
            bag = baggage.get_all(ctx)
            space = space or _text(bag.get(BAGGAGE_SPACE))
            project = project or _text(bag.get(BAGGAGE_PROJECT))
        return space or None, project or self.default_project

    def _warn_unknown(self, space: str) -> None:
        if space in self._warned or len(self._warned) >= MAX_WARNED_SPACES:
            return
        self._warned.add(space)
        log.warning(
            "Arize space %r is not in ARIZE_SPACE_ALLOWLIST: its runs execute, but their spans "
            "are not exported (add the space id to ARIZE_SPACE_ALLOWLIST to export them)",
            space,
        )


def _run_ids(metadata: ArizeMetadata) -> str:
    """The run ids sent as OpenInference `metadata`, where instrumentors and `RunAttributes`
    look; the same text as `json.dumps` of the dict, written out: this runs on every request."""
    pairs = (
        f'"{name}": {_quoted(value)}'
        for name in RUN_ID_FIELDS
        if (value := getattr(metadata, name))
    )
    return "{" + ", ".join(pairs) + "}"


def _set_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    span.set_attributes(attributes)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def instrument_fastapi(
    app: FastAPI, settings: Settings, tracer_provider: trace.TracerProvider
) -> None:
    """Opt-in (AGENT_FASTAPI_INSTRUMENTOR): an HTTP server span around every request.

    Credential headers are always in the sanitize list, so switching header capture on
    (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST) never records a key.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor  # noqa: PLC0415
    from opentelemetry.util.http import (  # noqa: PLC0415
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
        get_custom_headers,
    )

    sanitize = [
        *get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS),
        *ALWAYS_SECRET_HEADERS,
        settings.api_key_header,
        *settings.required_headers,
    ]
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracer_provider, http_capture_headers_sanitize_fields=sanitize
    )


def current_run_id() -> str | None:
    value = context_api.get_value(RUN_ID_KEY)
    return value if isinstance(value, str) else None


def trace_headers() -> dict[str, str]:
    """`traceparent`, `tracestate` and `baggage` of the current span, for outbound calls.

    The caller's `tracestate` goes on as it came while the `traceparent` is the caller's own
    (see the module's docstring); the SDK's re-serialised one when it is a span of ours.
    """
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    caller = context_api.get_value(CALLER_TRACESTATE_KEY)
    if isinstance(caller, tuple) and "tracestate" in carrier:  # the SDK found it valid
        span_id, raw = caller
        current = trace.get_current_span().get_span_context()
        if current.is_remote and current.span_id == span_id:
            carrier["tracestate"] = raw
    return carrier
