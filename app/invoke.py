"""`POST /invoke`: the request path, top to bottom.

declared body size → auth (both on headers alone) → content type → read the body with the
limit → parse and diagnose the envelope → placeholders → input schema → run the agent → the
agent's JSON, verbatim. Everything from the envelope on runs inside the request's AGENT span
(`app/tracing/`), which records the input, the output and any failure. The first two are
plain calls rather than FastAPI dependencies: the dependency machinery cost more per request
than the checks themselves.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

from app.auth import Authenticator
from app.body import BodyLimit
from app.context import build_context
from app.envelope import (
    Envelope,
    Shape,
    check_content_type,
    check_placeholders,
    parse_document,
    read_envelope,
)
from app.errors import ApiError, error_response
from app.idempotency import Idempotency
from app.input_schema import InputSchema, listed, problems
from app.offload import OFFLOAD_BYTES, off_the_loop
from app.redaction import Redactor
from app.runner import AgentRunner, ClientDisconnectedError
from app.settings import Settings
from app.tracing import INPUT_ENCODER, RequestSpan, Tracing

log = logging.getLogger("agent_endpoint")

MAX_ERROR_MESSAGE = 500
BODY_EXAMPLE = (
    '{"goal": "...", "arize_metadata": {...}} or {"input": {...}, "arize_metadata": {...}}'
)
READINGS: dict[Shape, str] = {
    "flat": "as the Agent Playground's flat body (fields at the top level)",
    "wrapped": 'as the setup page\'s wrapped body ({"input": {...}})',
}
CLIENT_CLOSED_REQUEST = 499  # nginx's code: nobody reads it, but it shows in access logs


class Acceptance:
    """The checks a run goes through before the agent, on both the sync and the async route."""

    def __init__(
        self,
        settings: Settings,
        body_limit: BodyLimit,
        authenticate: Authenticator,
        input_schema: InputSchema,
    ) -> None:
        self.settings = settings
        self.body_limit = body_limit
        self.authenticate = authenticate
        self.input_schema = input_schema

    async def envelope(self, request: Request) -> tuple[Envelope, bytes]:
        """Declared size, auth, content type, body within the limit, then its reading."""
        self.body_limit.check_declared(request)
        self.authenticate(request)
        check_content_type(request.headers.get("content-type"))
        body = await self.body_limit.read(request)
        envelope = await off_the_loop(len(body), self._read, body)
        log.debug("body read as %s (run %s)", envelope.shape, envelope.run_id)
        return envelope, body

    def _read(self, body: bytes) -> Envelope:
        document = parse_document(body, BODY_EXAMPLE)
        schema = self.input_schema
        envelope = read_envelope(
            document, self.settings.body_shape, schema.accepts, schema.declares_input
        )
        if len(body) > OFFLOAD_BYTES and self.settings.trace_io:
            # Encoding 80,000 keys for the span takes 20 ms: here, in the worker thread.
            envelope = replace(envelope, text=INPUT_ENCODER.encode(envelope.input))
        return replace(envelope, size=len(body))

    async def check_input(self, envelope: Envelope, body: bytes, trace: RequestSpan) -> None:
        """Warnings (metadata, placeholders inside values) to the span and the log, then the
        refusals: a value that is nothing but a placeholder, the input schema."""
        warnings = list(envelope.warnings)
        try:
            if self.settings.reject_placeholders and b"{{" in body:  # a byte scan spares the walk
                quote = self.settings.trace_io
                warnings += await off_the_loop(len(body), check_placeholders, envelope, quote=quote)
        finally:
            trace.annotate(envelope.shape, warnings)
            for warning in warnings:
                log.warning("run %s: %s", envelope.run_id, warning)
        await off_the_loop(len(body), self._check_schema, envelope)

    def _check_schema(self, envelope: Envelope) -> None:
        schema = self.input_schema
        if schema.accepts(envelope.input):
            return
        root = "input" if envelope.shape == "wrapped" else ""
        found = schema.violations(envelope.input, root)
        if self.settings.body_shape != "auto":
            raise schema.refusal(found, envelope.run_id)
        if envelope.alternative is not None:
            # Both readings were possible and neither fits: name what each lacked.
            other: Shape = "flat" if envelope.shape == "wrapped" else "wrapped"
            other_root = "input" if other == "wrapped" else ""
            other_found = schema.violations(envelope.alternative, other_root)
            note = (
                f" read {READINGS[envelope.shape]} ({problems(found)}): {listed(found)}; "
                f"read {READINGS[other]} ({problems(other_found)}): {listed(other_found)}"
            )
            raise ApiError(
                422,
                "input_schema_violation",
                f"the body fits neither shape of Arize's request:{note} — fix the body template "
                "in Arize, or the schema (GET /schema shows it)",
                run_id=envelope.run_id,
            )
        note = f" (read {READINGS[envelope.shape]}"
        if envelope.shape == "flat" and not envelope.wrapped_possible:
            note += "; not the setup page's wrapped body either: it has no `input` object"
        raise schema.refusal(found, envelope.run_id, note + ")")


def invoke_handler(
    settings: Settings,
    *,
    accept: Acceptance,
    runner: AgentRunner,
    redact: Redactor,
    tracing: Tracing,
    idempotency: Idempotency,
) -> Callable[[Request], Awaitable[Response]]:
    """Build the route function, closing over the app's collaborators."""

    async def invoke(request: Request) -> Response:
        envelope, body = await accept.envelope(request)
        answer = lambda: respond(request, envelope, body)  # noqa: E731
        return await idempotency.run(request, envelope, answer, route="sync")

    async def respond(request: Request, envelope: Envelope, body: bytes) -> Response:
        metadata = envelope.arize_metadata
        run_id = metadata.run_id if metadata else None
        trace = tracing.start(request.headers, metadata, envelope.traced)
        try:
            response = await run_agent(envelope, body, request, trace)
            trace.record_output(bytes(response.body), response.status_code)
        except ApiError as exc:
            exc.run_id = run_id
            trace.fail(exc.status_code, exc.error_type, exc.message, exc)
            raise
        finally:
            trace.end()
        return response

    async def run_agent(
        envelope: Envelope, body: bytes, request: Request, trace: RequestSpan
    ) -> Response:
        payload, metadata, run_id = envelope.input, envelope.arize_metadata, envelope.run_id
        await accept.check_input(envelope, body, trace)
        ctx = build_context(payload, metadata, settings, trace.span)
        try:
            result = await runner.run(payload, ctx, request.receive)
        except ApiError:
            raise
        except ClientDisconnectedError as exc:
            message = "the caller disconnected; the agent run was cancelled"
            trace.fail(CLIENT_CLOSED_REQUEST, "client_disconnected", message, exc)
            return error_response(
                CLIENT_CLOSED_REQUEST, "client_disconnected", message, run_id=run_id
            )
        except Exception as exc:  # noqa: BLE001 - any agent failure becomes one error shape
            # The traceback is formatted here so configured secrets can be masked out of it,
            # which logger.exception() would not do.
            stack = redact("".join(traceback.format_exception(exc)))
            ctx.logger.error("agent %s raised:\n%s", runner.agent.name, stack)  # noqa: TRY400
            detail = redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_MESSAGE]
            trace.fail(500, "agent_error", detail, exc)
            return error_response(500, "agent_error", f"the agent raised {detail}", run_id=run_id)
        return Response(render(result), media_type="application/json")

    return invoke


def render(result: Any) -> bytes:
    """The agent's output as the JSON the caller gets (500 if it is not JSON)."""
    if isinstance(result, BaseModel):
        return result.model_dump_json().encode()
    try:
        return json.dumps(
            result, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError) as exc:
        raise ApiError(
            500,
            "invalid_agent_output",
            f"the agent returned a value that is not JSON ({exc}); return dicts, lists, "
            "strings, numbers, booleans, None or pydantic models",
        ) from None
