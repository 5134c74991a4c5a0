"""Shared fixtures: settings without the environment, the real app over httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from app.entrypoint import AgentFunction
from app.main import create_app
from app.redaction import Redactor
from app.settings import Settings
from app.tracing import build_tracer_provider

# `phoenix`: a real Phoenix on 127.0.0.1; `redis_server`: Debian's redis-server on 127.0.0.1.
pytest_plugins = ["tests.phoenix", "tests.redis_server"]

KEY = "test-key-aaaaaaaaaaaaaaaaaaaaaaaa"
OLD_KEY = "test-key-old-bbbbbbbbbbbbbbbbbbbb"
AUTH = {"Authorization": f"Bearer {KEY}"}

METADATA: dict[str, Any] = {
    "dataset_id": "ds_1",
    "experiment_id": "exp_1",
    "run_id": "run_1",
    "example_id": "ex_1",
    "space_id": "sp_1",
}


def envelope(goal: str = "Plan a 3-day trip to Tokyo", **input_extra: Any) -> dict[str, Any]:
    return {"input": {"goal": goal, **input_extra}, "arize_metadata": dict(METADATA)}


class ArgumentsOnly(Settings):
    """Settings that read their keyword arguments and nothing else."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(**overrides: Any) -> Settings:
    """Settings from keyword arguments only: the developer's environment and .env are ignored
    (a generated project's tests run next to its .env).

    Idempotency is off unless asked for: the suite's rows all carry METADATA's run id, where
    Arize gives every row its own; tests/test_idempotency.py turns it on.

    The fast pipeline's export child runs at the tests' own priority unless a test asks for a
    niceness (tests/test_export_process.py does): by default it yields the CPU (niceness 10),
    and on a busy machine a niced child gets almost none, so a flush the test waits on starves.
    """
    return ArgumentsOnly(**{"api_keys": [KEY], "idempotency": False, "export_nice": 0, **overrides})


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that talks to the real app in-process, with its lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


AppFactory = Callable[..., FastAPI]

# The process-wide provider every in-process app uses, as `agent-endpoint serve` would install
# it, exporting synchronously to memory so a test reads its spans right after the response.
EXPORTED = InMemorySpanExporter()
PIPELINES = ("sdk", "fast")  # AGENT_TRACE_PIPELINE
PROVIDERS: dict[str, TracerProvider] = {
    pipeline: build_tracer_provider(
        make_settings(trace_pipeline=pipeline),
        Redactor([KEY, OLD_KEY]),
        SimpleSpanProcessor(EXPORTED),
    )
    for pipeline in PIPELINES
}
trace.set_tracer_provider(PROVIDERS["sdk"])


@pytest.fixture(params=PIPELINES)
def pipeline(request: pytest.FixtureRequest) -> str:
    """Each pipeline in turn: pass `PROVIDERS[pipeline]` to `create_app` (the spans the agent
    starts itself go through the process-wide provider, the SDK pipeline's, to EXPORTED too)."""
    name: str = request.param
    return name


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """The spans exported during one test."""
    EXPORTED.clear()
    yield EXPORTED
    EXPORTED.clear()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def build_app() -> AppFactory:
    def build(agent: AgentFunction | None = None, **overrides: Any) -> FastAPI:
        return create_app(make_settings(**overrides), agent=agent)

    return build


@pytest.fixture
async def client(build_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(build_app()) as http:
        yield http
