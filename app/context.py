"""What the agent receives besides its input: `run(input, ctx)`."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from opentelemetry.trace import INVALID_SPAN, Span

from app.envelope import ArizeMetadata
from app.settings import Settings
from app.tracing import trace_headers

P = ParamSpec("P")
R = TypeVar("R")

AGENT_LOGGER = logging.getLogger("agent")


@dataclass
class AgentContext:
    """Per-request context handed to the agent.

    - `config`: `input["config"]` when it is an object (Arize presets fill it), else `{}`.
    - `metadata`: Arize's ids for this run (`None` when called without `arize_metadata`).
    - `logger`: a logger whose records carry the run id.
    - `cancelled`: set when the run times out or the caller disconnects; a sync agent that
      loops should check `ctx.cancelled.is_set()` and stop, since a thread cannot be killed.
    - `deadline`: `time.monotonic()` value at which the run is cut off; see `time_left()`.
    - `span`: the request's AGENT span (children you start with any OpenTelemetry tracer nest
      under it); `trace_headers()` gives the headers that make a downstream service join the
      trace; `propagate(fn)` carries the trace and run ids into threads you start yourself.
    """

    config: dict[str, Any]
    metadata: ArizeMetadata | None
    settings: Settings
    logger: logging.LoggerAdapter[logging.Logger]
    deadline: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    span: Span = INVALID_SPAN

    @property
    def run_id(self) -> str | None:
        return self.metadata.run_id if self.metadata else None

    def time_left(self) -> float:
        """Seconds until the time limit; pass it on as the timeout of slow calls."""
        return max(0.0, self.deadline - time.monotonic())

    @staticmethod
    def trace_headers() -> dict[str, str]:
        """`traceparent`/`tracestate`/`baggage` for the agent's own outbound HTTP calls.

        `httpx.get(url, headers=ctx.trace_headers())`: the called service's spans join this
        run's trace, under the span that is current where you call it.
        """
        return trace_headers()

    @staticmethod
    def propagate(fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap `fn` so it runs in this request's trace context, in whatever thread calls it.

        `threading.Thread(target=ctx.propagate(work)).start()` or
        `pool.submit(ctx.propagate(work), item)`: spans started in `work` are children of the
        current span and carry the run ids. Each call runs in its own copy of the context.
        """
        captured = contextvars.copy_context()

        def run_in_context(*args: P.args, **kwargs: P.kwargs) -> R:
            return captured.copy().run(fn, *args, **kwargs)

        return run_in_context


def build_context(
    payload: dict[str, Any],
    metadata: ArizeMetadata | None,
    settings: Settings,
    span: Span = INVALID_SPAN,
    timeout: float | None = None,
) -> AgentContext:
    """The agent's context; `timeout` is the run's own limit (a job's), by default the sync
    route's AGENT_TIMEOUT_SECONDS, so `ctx.time_left()` counts down from the limit that applies."""
    config = payload.get("config")
    run_id = metadata.run_id if metadata else None
    return AgentContext(
        config=config if isinstance(config, dict) else {},
        metadata=metadata,
        settings=settings,
        logger=logging.LoggerAdapter(AGENT_LOGGER, {"run_id": run_id}),
        deadline=time.monotonic() + (timeout if timeout is not None else settings.timeout_seconds),
        span=span,
    )
