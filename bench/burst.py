"""A burst: N identical requests at once over N raw keep-alive connections.

All N connections are opened first; then every request is written before any response is read,
and the wall time runs from the first write to the last complete response. A request counts as
ok when it gets HTTP 200 with exactly the expected JSON. Plain asyncio streams and a minimal
HTTP/1.1 reader (status line + Content-Length) keep the client far from being the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OK = "ok"
CONNECT_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0
READ_ERRORS = (
    OSError,
    TimeoutError,
    ValueError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class BurstResult:
    requests: int
    ok: int
    first_seconds: float | None  # first write → first complete response; None if none came
    wall_seconds: float | None  # first write → last complete response; None if none came
    outcomes: dict[str, int]  # "ok", "HTTP 429", "TimeoutError", ... → count

    @property
    def failed(self) -> int:
        return self.requests - self.ok


def http_request(host: str, port: int, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def burst(
    host: str, port: int, request: bytes, count: int, *, expected: Any, within: float
) -> BurstResult:
    """Send `request` `count` times at once; a response not complete `within` s has failed.

    The time limit applies per request, so a slow burst still reports what did arrive.
    """
    opened = await asyncio.gather(*(_connect(host, port) for _ in range(count)))
    connections = [item for item in opened if not isinstance(item, str)]
    outcomes = Counter(item for item in opened if isinstance(item, str))
    try:
        replies = await _exchange_all(connections, request, expected, within)
    finally:
        await _close_all(connections)
    outcomes.update(outcome for outcome, _ in replies)
    times = [elapsed for _, elapsed in replies if elapsed is not None]
    return BurstResult(
        requests=count,
        ok=outcomes[OK],
        first_seconds=min(times, default=None),
        wall_seconds=max(times, default=None),
        outcomes=dict(outcomes),
    )


async def _connect(host: str, port: int) -> Connection | str:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        return f"connect: {type(exc).__name__}"


async def _exchange_all(
    connections: list[Connection], request: bytes, expected: Any, within: float
) -> list[tuple[str, float | None]]:
    """Each request's outcome and the seconds from the first write to its complete response."""
    deadline = asyncio.get_running_loop().time() + within
    start = time.perf_counter()
    for _, writer in connections:
        writer.write(request)
    results = await asyncio.gather(
        *(_exchange(reader, writer, expected, deadline) for reader, writer in connections)
    )
    return [(outcome, None if at is None else at - start) for outcome, at in results]


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, expected: Any, deadline: float
) -> tuple[str, float | None]:
    """The outcome of one request, and when its response was complete (None if it never was)."""
    try:
        async with asyncio.timeout_at(deadline):
            await writer.drain()
            status, body = await _read_response(reader)
    except READ_ERRORS as exc:
        return type(exc).__name__, None
    at = time.perf_counter()
    if status != 200:
        return f"HTTP {status}", at
    if _json_or_none(body) != expected:
        return "unexpected body", at
    return OK, at


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *header_lines = head.rstrip("\r\n").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    length: int | None = None
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without Content-Length")
    return status, await reader.readexactly(length)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


async def _close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await asyncio.gather(
                *(writer.wait_closed() for _, writer in connections), return_exceptions=True
            )
