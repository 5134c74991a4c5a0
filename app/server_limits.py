"""What uvicorn's HTTP server lacks against slow or oversized clients, and the shutdown answer.

uvicorn's httptools protocol (what `agent-endpoint serve` runs) has no limit on the size or
number of headers (httptools grows an unfinished header in memory without end), no time limit
on receiving them, and no cap on open connections: eight unfinished 64 MB headers took the
process from 76 to 607 MiB, and a few hundred half-sent request heads used up the file
descriptors so that /healthz stopped answering. `LimitedHttpToolsProtocol` adds, per process:

- AGENT_MAX_HEADER_BYTES / AGENT_MAX_HEADERS: past either, 431 and the connection is closed;
- AGENT_HEADER_TIMEOUT_SECONDS: from a connection's opening (or the first byte of its next
  request) to the end of the headers; past it 408 and the connection is closed;
- AGENT_MAX_CONNECTIONS (lowered to fit `ulimit -n`): a new connection past the cap closes the
  connection that has waited longest for its headers (or idled longest between requests), so
  slow clients cannot hold out a health check; when every connection has a request running,
  the new one gets 503 instead;
- a request still running when the shutdown grace has passed, which uvicorn cancels, is
  answered with the project's JSON 503 `shutting_down` instead of uvicorn's plain-text 500.

The body's read time is limited where the body is read (app/body.py,
AGENT_BODY_TIMEOUT_SECONDS). Everything else is uvicorn's own code: this subclass only hooks
its parser callbacks and connection events.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from app.errors import error_body
from app.settings import Settings, load_settings

log = logging.getLogger("agent_endpoint.server")

# File descriptors kept free of client connections: the listening socket, logs, the span
# export process, Redis, and the agent's own outbound connections.
RESERVED_FDS = 64


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout_seconds,
            max_connections=connection_cap(settings.max_connections),
        )


def connection_cap(configured: int) -> int:
    """AGENT_MAX_CONNECTIONS, lowered so that connections cannot use up the fd limit."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or configured <= soft - RESERVED_FDS:
        return configured
    cap = max(1, soft - RESERVED_FDS)
    log.warning(
        "AGENT_MAX_CONNECTIONS=%d does not fit the file descriptor limit (ulimit -n %d): "
        "serving at most %d connections; raise the limit to serve more",
        configured,
        soft,
        cap,
    )
    return cap


@dataclass(frozen=True)
class _Refusal:
    status: int
    error_type: str
    message: str


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header limits, a header timeout and a connection cap.

    uvicorn builds one per connection with keyword arguments; `agent-endpoint serve` passes
    `functools.partial(LimitedHttpToolsProtocol, limits=...)` as `http=` (a partial pickles,
    so worker processes get it too). Without `limits` (`uvicorn --http
    app.server_limits:LimitedHttpToolsProtocol`), they come from the environment, once.
    """

    _default_limits: ServerLimits | None = None

    def __init__(self, *args: Any, limits: ServerLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or self._limits_from_environment()
        self._head_bytes = 0  # request line and headers of the current request, parsed
        self._unparsed_head = 0  # bytes received while the headers were not complete
        self._header_count = 0
        self._ended = False  # a request ended in the data being parsed
        self._reading_head = True
        self._refusal: _Refusal | None = None
        self._waiting_since: float | None = None  # evictable: no request of ours is running
        self._header_timer: asyncio.TimerHandle | None = None

    @classmethod
    def _limits_from_environment(cls) -> ServerLimits:
        if cls._default_limits is None:
            cls._default_limits = ServerLimits.from_settings(load_settings())
        return cls._default_limits

    # -- connection events

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = time.monotonic()
        self._start_header_timer()
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            self._refuse(
                _Refusal(
                    503,
                    "too_many_connections",
                    f"the server holds AGENT_MAX_CONNECTIONS={self.limits.max_connections} "
                    "connections, each with a request running; retry later",
                )
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self._waiting_since = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._ended = False
        super().data_received(data)
        if self._refusal is None and self._reading_head and not self._ended:
            # All of `data` belongs to a request head that httptools keeps in memory until
            # the header ends: count it here, since no callback sees an unfinished header.
            # (Data that also ended a pipelined request is left to the callbacks' count.)
            self._unparsed_head += len(data)
            if self._unparsed_head > self.limits.max_header_bytes:
                self._refusal = self._too_large()
        if self._refusal is not None:
            self._refuse(self._refusal)

    # -- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._unparsed_head = self._header_count = 0
        self._reading_head = True
        if self._header_timer is None:
            self._start_header_timer()

    def on_url(self, url: bytes) -> None:
        if self._refusal is None:
            super().on_url(url)
            self._count(len(url), headers=0)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refusal is None:
            super().on_header(name, value)
            self._count(len(name) + len(value) + 4, headers=1)

    def on_headers_complete(self) -> None:
        if self._refusal is None:
            self._reading_head = False
            self._waiting_since = None
            self._stop_header_timer()
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._ended = True
        if self._refusal is None:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._waiting_since = time.monotonic()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        super()._start_asgi_task(cycle, _AnswerCancelled(app, cycle, self.config))

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request httptools cannot parse, in the project's JSON shape
        (uvicorn has logged it already)."""
        message = f"{msg.rstrip('.')}: not a valid HTTP/1.1 request"
        self._refuse(_Refusal(400, "invalid_http", message), quiet=True)

    # -- the limits

    def _count(self, size: int, *, headers: int) -> None:
        self._head_bytes += size
        self._header_count += headers
        if self._head_bytes > self.limits.max_header_bytes:
            self._refusal = self._too_large()
        elif self._header_count > self.limits.max_headers:
            self._refusal = _Refusal(
                431,
                "too_many_headers",
                f"the request has more than AGENT_MAX_HEADERS={self.limits.max_headers} header "
                "fields; send fewer or raise the setting",
            )

    def _too_large(self) -> _Refusal:
        return _Refusal(
            431,
            "headers_too_large",
            f"the request line and headers are larger than AGENT_MAX_HEADER_BYTES="
            f"{self.limits.max_header_bytes}; send smaller headers or raise the setting",
        )

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request is late while the previous one runs: close after that one.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self._refuse(
            _Refusal(
                408,
                "header_timeout",
                "the request headers did not arrive within AGENT_HEADER_TIMEOUT_SECONDS="
                f"{self.limits.header_timeout:g}",
            )
        )

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest with no request running."""
        oldest: LimitedHttpToolsProtocol | None = None
        for connection in self.connections:
            if (
                connection is not self
                and isinstance(connection, LimitedHttpToolsProtocol)
                and connection._waiting_since is not None
                and (oldest is None or connection._waiting_since < oldest._waiting_since)  # type: ignore[operator]
            ):
                oldest = connection
        if oldest is None:
            return False
        log.info(
            "closed the connection from %s, the longest waiting without a request, for a new "
            "one past AGENT_MAX_CONNECTIONS=%d",
            _peer(oldest.client),
            self.limits.max_connections,
        )
        oldest._waiting_since = None
        oldest.transport.close()
        return True

    def _refuse(self, refusal: _Refusal, *, quiet: bool = False) -> None:
        """Answer in the project's JSON error shape, then close the connection."""
        self._refusal = refusal
        self._stop_header_timer()
        self._waiting_since = None
        if self.transport.is_closing():
            return
        if not quiet:
            log.info("refused a connection from %s: %s", _peer(self.client), refusal.message)
        body = error_body(refusal.error_type, refusal.message)
        head = [STATUS_LINE[refusal.status]]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown client"


class _AnswerCancelled:
    """The ASGI app of one request; if uvicorn cancels it at the end of the shutdown grace
    before it answered, the caller gets the project's JSON 503 instead of a plain-text 500."""

    __slots__ = ("app", "config", "cycle")

    def __init__(self, app: ASGI3Application, cycle: RequestResponseCycle, config: Any) -> None:
        self.app = app
        self.cycle = cycle
        self.config = config

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # uvicorn's shutdown cancelled it; answer instead
            grace = self.config.timeout_graceful_shutdown or 0
            log.warning(
                "shutdown: a request still running after AGENT_SHUTDOWN_GRACE_SECONDS=%g was "
                "cancelled (%s %s)",
                grace,
                scope.get("method", ""),
                scope.get("path", ""),
            )
            if self.cycle.disconnected:
                return
            if self.cycle.response_started:
                self.cycle.transport.close()
                return
            body = error_body(
                "shutting_down",
                f"the server shut down before the request finished (AGENT_SHUTDOWN_GRACE_"
                f"SECONDS={grace:g}); retry on another replica, or raise the setting",
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(body)),
                        (b"connection", b"close"),
                        (b"retry-after", b"1"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
