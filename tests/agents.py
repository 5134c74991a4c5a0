"""Agents the tests load by entrypoint string (AGENT_ENTRYPOINT=tests.agents:...)."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from opentelemetry import trace

from app.context import AgentContext

NOT_CALLABLE = {"an": "object"}


async def echo(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    return {"input": input, "run_id": ctx.run_id}


def sync_echo(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    return {"input": input, "run_id": ctx.run_id}


async def slow(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    await asyncio.sleep(float(input.get("seconds", 1)))
    return {"slept": input.get("seconds", 1)}


def blocking(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    time.sleep(float(input.get("seconds", 1)))
    return {"slept": input.get("seconds", 1)}


def one_argument(input: dict[str, Any]) -> None:  # noqa: A002
    """Wrong: the agent must accept (input, ctx)."""


class Tools:
    @staticmethod
    async def run(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        return "nested attribute"


TRACER = trace.get_tracer("tests.agents")


async def traced(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """Child spans the way users write them: a plain OpenTelemetry tracer, and a thread."""
    with TRACER.start_as_current_span("lookup") as span:
        span.set_attribute("lookup.city", str(input.get("goal", "")))
        headers = ctx.trace_headers()

    def in_thread() -> None:
        with TRACER.start_as_current_span("worker-thread"):
            pass

    thread = threading.Thread(target=ctx.propagate(in_thread))
    thread.start()
    thread.join()
    return {"trace_headers": headers, "run_id": ctx.run_id}


def sync_traced(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    with ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(ctx.propagate(_pooled_span), "pooled").result()
    with TRACER.start_as_current_span("sync-lookup"):
        return {"trace_headers": ctx.trace_headers()}


def _pooled_span(name: str) -> None:
    with TRACER.start_as_current_span(name):
        pass


async def failing(input: dict[str, Any], ctx: AgentContext) -> None:  # noqa: A002
    raise RuntimeError(str(input.get("message", "boom")))


async def logging_agent(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    ctx.logger.info("planning %s", input.get("goal"))
    return {"ok": True}


async def job(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """An async job: waits `input["seconds"]` (default none), then answers with its goal."""
    await asyncio.sleep(float(input.get("seconds", 0)))
    return {"done": input.get("goal"), "run_id": ctx.run_id}


def cancellable(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """A sync job that, given `input["marker"]`, writes "started" there, waits up to 60 s for
    `ctx.cancelled`, then appends "cancelled" if it was set; without a marker it answers."""
    marker = input.get("marker")
    if marker is None:
        return {"done": input.get("goal")}
    with open(marker, "w") as file:  # noqa: PTH123
        file.write("started\n")
    cancelled = ctx.cancelled.wait(60)
    with open(marker, "a") as file:  # noqa: PTH123
        file.write("cancelled\n" if cancelled else "timed out\n")
    return {"done": input.get("goal")}


async def counted(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """Counts its own runs across processes: one line per run in `input["count_file"]`.

    Waits `input["seconds"]`; with `fail_first`, the first run raises. The answer holds a
    nonce of its own, so two runs never answer the same bytes.
    """
    runs = await asyncio.to_thread(_count, Path(input["count_file"]), ctx.run_id)
    first = runs == 1
    await asyncio.sleep(float(input.get("seconds", 0)))
    if input.get("fail_first") and first:
        raise RuntimeError("the first run fails")
    return {"goal": input.get("goal"), "nonce": secrets.token_hex(8), "run_id": ctx.run_id}


def _count(path: Path, run_id: str | None) -> int:
    """Append one line (O_APPEND: atomic between processes); the runs counted so far."""
    with path.open("a") as file:
        file.write(f"{run_id}\n")
    return len(path.read_text().splitlines())


def printing(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """Prints what it is given, and the process's own key, as a careless agent might."""
    print(f"careless: {input.get('goal')} {os.environ.get('AGENT_API_KEYS')}")  # noqa: T201
    print(f"careless stderr: {os.environ.get('AGENT_API_KEYS')}", file=sys.stderr)  # noqa: T201
    return {"printed": True}
