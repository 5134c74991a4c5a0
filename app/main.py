"""The ASGI application: `create_app(...)` builds it; `app.main:app` is built on first access.

Nothing happens at import time: `uvicorn app.main:app` triggers `create_app()` through the
module's `__getattr__`, so a bad configuration fails there, with a message naming the fix.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI
from opentelemetry import trace
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.async_invoke import add_job_routes
from app.auth import Authenticator
from app.body import BodyLimit
from app.entrypoint import Agent, AgentFunction, load_agent
from app.envelope import EXAMPLE_FLAT, EXAMPLE_METADATA, EXAMPLE_WRAPPED, ShapeSetting
from app.errors import ERROR_RESPONSES, install_error_handlers
from app.idempotency import Idempotency, build_idempotency
from app.input_schema import InputSchema
from app.invoke import Acceptance, invoke_handler
from app.jobs import JobsRuntime, build_jobs
from app.logs import configure_logging
from app.redaction import Redactor, mask_standard_streams
from app.runner import AgentRunner
from app.settings import Settings, load_settings
from app.tracing import Tracing, instrument_fastapi

log = logging.getLogger("agent_endpoint")

EXAMPLE_OUTPUT = {
    "final_response": "3-day plan for Tokyo:\nDay 1: Senso-ji temple (clear, 21°C)\n...",
    "tool_calls": [
        {
            "name": "lookup_city",
            "arguments": {"city": "tokyo"},
            "result": {"city": "Tokyo", "attractions": ["Senso-ji temple", "..."]},
        }
    ],
    "turns": 4,
    "model": "claude-sonnet-4-5",
}


class SchemaDocument(BaseModel):
    input_schema: dict[str, Any] = Field(description="Paste into Arize's Input Schema field.")
    presets: dict[str, dict[str, Any]] = Field(description="Named config payloads.")
    invoke_path: str = Field(description="The path to register in Arize, after your host.")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "busy", "unavailable"] = Field(
        description="busy: every AGENT_MAX_CONCURRENCY slot is taken (a new run would get 429); "
        "unavailable: starting or shutting down."
    )
    agent: str
    in_flight: int
    overdue: int = Field(
        description="Runs past their time limit that have not stopped yet (a sync agent's "
        "thread cannot be killed): they keep their slots until they return."
    )


def create_app(
    settings: Settings | None = None,
    agent: AgentFunction | Agent | None = None,
    input_schema: InputSchema | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> FastAPI:
    """Build the service. Every argument defaults to what the environment configures.

    `agent` accepts a plain `run(input, ctx)` callable: tests and embedding apps inject fakes here.
    `tracer_provider` replaces the process-wide provider built from the OTEL_* settings; build
    it with `app.tracing.build_tracer_provider` so run ids and secret masking still apply.
    """
    settings = settings or load_settings()
    settings.check_auth_configured()
    settings.check_tracing_configured()
    settings.check_jobs_configured()
    if agent is None:
        loaded = load_agent(settings.entrypoint)
    elif isinstance(agent, Agent):
        loaded = agent
    else:
        loaded = Agent.wrap(agent)
    schema = input_schema or InputSchema.from_files(
        settings.input_schema_file, settings.presets_file
    )
    runner = AgentRunner(loaded, settings)
    redact = Redactor(settings.secret_values())
    tracing = Tracing.from_settings(settings, redact, loaded.name, tracer_provider)
    jobs_runtime = build_jobs(settings, loaded, tracing, redact)
    idempotency = build_idempotency(settings, tracing)
    if settings.auth_disabled and not settings.api_keys:
        log.warning(
            "AUTHENTICATION IS DISABLED (AGENT_AUTH_DISABLED=true): anyone who can reach this "
            "server can run the agent. Use this for local development only."
        )

    lifespan = _lifespan(
        settings, loaded.name, runner, tracing, jobs_runtime, idempotency=idempotency
    )
    docs = settings.docs_enabled
    app = FastAPI(
        # FastAPI's own OpenTelemetry spans (0.165+) would wrap ours in three more spans per
        # request, at a cost; the AGENT span is the request span. AGENT_FASTAPI_INSTRUMENTOR
        # adds an HTTP server span for those who want one.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
        title="agent-endpoint",
        summary="An AI agent behind the HTTP contract of Arize AI's agent experiments.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.ready = False
    app.state.runner = runner
    app.state.settings = settings
    app.state.jobs = jobs_runtime
    app.state.idempotency = idempotency
    install_error_handlers(app, settings.invoke_path)

    authenticate = Authenticator(settings)
    body_limit = BodyLimit(settings.max_body_bytes, settings.body_timeout_seconds)
    accept = Acceptance(settings, body_limit, authenticate, schema)
    invoke = invoke_handler(
        settings,
        accept=accept,
        runner=runner,
        redact=redact,
        tracing=tracing,
        idempotency=idempotency,
    )
    # The invoke route is served by a plain Starlette route: FastAPI's request handling
    # (dependency solving, response validation) would run on every request for a handler
    # that takes the raw request and returns a finished response. The FastAPI route below
    # comes after it, so it only documents the operation in OpenAPI.
    app.router.routes.append(Route(settings.invoke_path, invoke, methods=["POST"]))
    app.add_api_route(
        settings.invoke_path,
        invoke,
        methods=["POST"],
        summary="Run the agent on one dataset row",
        description=(
            "Arize POSTs one body per dataset row, in either shape: the Agent Playground's "
            "(templated fields at the top level, `arize_metadata` beside them) or the setup "
            'page\'s (`{"input": {...}, "arize_metadata": {...}}`); AGENT_BODY_SHAPE says '
            "how to tell them apart. The answer is the agent's JSON, stored verbatim."
        ),
        response_class=JSONResponse,
        responses={
            200: {
                "description": "The agent's output, any JSON shape.",
                "content": {"application/json": {"example": EXAMPLE_OUTPUT}},
            },
            **ERROR_RESPONSES,
        },
        openapi_extra={
            "requestBody": _request_body(schema, settings.invoke_path, settings.body_shape)
        },
        tags=["agent"],
    )

    if jobs_runtime is not None:
        add_job_routes(
            app,
            settings=settings,
            accept=accept,
            authenticate=authenticate,
            tracing=tracing,
            jobs=jobs_runtime.jobs,
            idempotency=idempotency,
            request_body=lambda path: _request_body(schema, path, settings.body_shape),
        )
    _document_security(app, settings)
    if settings.fastapi_instrumentor:
        instrument_fastapi(app, settings, tracing.provider)

    _add_operation_routes(app, settings, runner, loaded.name, schema)
    return app


def _lifespan(
    settings: Settings,
    agent_name: str,
    runner: AgentRunner,
    tracing: Tracing,
    jobs_runtime: JobsRuntime | None,
    *,
    idempotency: Idempotency,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything loaded so far (framework, agent, its libraries) lives as long as the
        # process: move it out of the collector's reach, so collections triggered by request
        # garbage stay short instead of walking ~60k long-lived objects (better p99).
        gc.collect()
        gc.freeze()
        if jobs_runtime is not None:
            jobs_runtime.start()
        app.state.ready = True
        log.info("agent %s ready on %s", agent_name, settings.invoke_path)
        try:
            yield
        finally:
            app.state.ready = False
            await runner.drain(settings.shutdown_grace_seconds)
            runner.close()
            if jobs_runtime is not None:
                await jobs_runtime.close()
            await idempotency.close()
            tracing.close()

    return lifespan


def _add_operation_routes(
    app: FastAPI, settings: Settings, runner: AgentRunner, agent_name: str, schema: InputSchema
) -> None:
    @app.get("/healthz", tags=["operations"], summary="Liveness: the process serves requests")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the agent is loaded, a slot is free, the server is not stopping",
        responses={503: {"model": Readiness, "description": "Busy, starting or shutting down."}},
    )
    async def readyz() -> JSONResponse:
        # As AgentCore's HealthyBusy: alive, but a balancer should send the next row elsewhere.
        if not app.state.ready or runner.draining:
            status = "unavailable"
        elif runner.in_flight >= runner.capacity:
            status = "busy"
        else:
            status = "ready"
        body = Readiness(
            status=status, agent=agent_name, in_flight=runner.in_flight, overdue=runner.overdue
        )
        return JSONResponse(body.model_dump(), status_code=200 if status == "ready" else 503)

    @app.get("/schema", tags=["agent"], summary="The input JSON Schema and request presets")
    async def input_schema_route() -> SchemaDocument:
        return SchemaDocument(
            input_schema=schema.schema, presets=schema.presets, invoke_path=settings.invoke_path
        )


AUTHENTICATED = frozenset({("/jobs/{job_id}", "get")})  # besides the invoke routes


def _document_security(app: FastAPI, settings: Settings) -> None:
    """Declare the accepted credential forms in OpenAPI, so /docs has an Authorize button."""
    if settings.auth_disabled and not settings.api_keys:
        return
    build = app.openapi
    header = settings.api_key_header

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemes: dict[str, dict[str, str]] = {}
            if settings.auth_mode in {"any", "bearer"}:
                schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            if settings.auth_mode in {"any", "header"}:
                schemes["apiKey"] = {"type": "apiKey", "in": "header", "name": header}
            document.setdefault("components", {})["securitySchemes"] = schemes
            for path, methods in document["paths"].items():
                for method, operation in methods.items():
                    if (path, method) in AUTHENTICATED or path.startswith(settings.invoke_path):
                        operation["security"] = [{name: []} for name in schemes]
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


METADATA_SCHEMA: dict[str, Any] = {
    "description": "Appended by Arize: dataset_id, experiment_id, run_id, example_id, space_id "
    "(strings), maybe project_name and more. For correlation only: any value is accepted, and "
    "what is missing or odd is a warning on the span and in the log, never a refusal.",
    "example": EXAMPLE_METADATA,
}


def _request_body(schema: InputSchema, path: str, shape: ShapeSetting) -> dict[str, Any]:
    """Both shapes Arize sends (app/envelope.py), or the one AGENT_BODY_SHAPE fixes."""
    # Local `$ref`s of the input schema point into where it sits in the OpenAPI document.
    pointer = path.replace("~", "~0").replace("/", "~1")
    base = f"#/paths/{pointer}/post/requestBody/content/application~1json/schema"
    shapes = ["flat", "wrapped"] if shape == "auto" else [shape]
    variants: list[dict[str, Any]] = []
    examples: dict[str, dict[str, Any]] = {}
    for position, name in enumerate(shapes):
        at = f"{base}/anyOf/{position}" if len(shapes) > 1 else base
        if name == "flat":
            variants.append(_flat_schema(schema.openapi_schema(at)))
            examples["flat"] = {
                "summary": "The Agent Playground's body: fields at the top level",
                "value": EXAMPLE_FLAT,
            }
        else:
            variants.append(
                {
                    "title": "Wrapped",
                    "type": "object",
                    "required": ["input"],
                    "properties": {
                        "input": schema.openapi_schema(f"{at}/properties/input"),
                        "arize_metadata": METADATA_SCHEMA,
                    },
                    "additionalProperties": True,
                }
            )
            examples["wrapped"] = {
                "summary": 'The setup page\'s body: {"input": {...}, "arize_metadata": {...}}',
                "value": EXAMPLE_WRAPPED,
            }
    body_schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {
        "required": True,
        "content": {"application/json": {"schema": body_schema, "examples": examples}},
    }


def _flat_schema(input_schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema with `arize_metadata` beside its fields, where it can say so."""
    properties = input_schema.get("properties")
    if not isinstance(properties, dict):
        return {"title": "Flat", **input_schema}
    return {
        **input_schema,
        "title": "Flat",
        "properties": {**properties, "arize_metadata": METADATA_SCHEMA},
    }


def __getattr__(name: str) -> Any:
    """`app.main:app`: built on first access, once, so importing this module does nothing."""
    if name == "app":
        settings = load_settings()
        mask_standard_streams(settings.secret_values())  # the agent's print too
        configure_logging(settings)
        application = create_app(settings)
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
