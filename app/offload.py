"""Large request bodies are read, scanned and validated in a worker thread, not on the loop.

Reading, scanning and validating a body are linear in its size, but a megabyte of hostile JSON
still takes tens of milliseconds of Python (measured in bench/hostile.py): on the event loop
that would stall every other request and /healthz. In a thread the loop keeps its turns (the
interpreter switches threads every 5 ms; a C call such as `json.loads` holds on for its
length, about 20 ms for a megabyte of small keys). Small bodies, nearly all of them, skip the
hand-off, which costs more than their scan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

OFFLOAD_BYTES = 64 * 1024  # bodies larger than this are handled in a worker thread

P = ParamSpec("P")
R = TypeVar("R")


async def off_the_loop(size: int, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`function(...)` in a worker thread when the body (`size` bytes) is large, else here."""
    if size <= OFFLOAD_BYTES:
        return function(*args, **kwargs)
    return await asyncio.to_thread(function, *args, **kwargs)
