"""Request body limits: AGENT_MAX_BODY_BYTES, enforced from `Content-Length` and while streaming,
and AGENT_BODY_TIMEOUT_SECONDS for the whole read (a lying `Content-Length` cannot hold a
connection open). A caller that goes away mid-body is one log line, not a traceback."""

from __future__ import annotations

import asyncio
import logging

from fastapi import Request
from starlette.requests import ClientDisconnect

from app.errors import ApiError

log = logging.getLogger("agent_endpoint")

CLIENT_CLOSED_REQUEST = 499  # nginx's code: nobody reads it, but it shows in access logs


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"the request body is larger than AGENT_MAX_BODY_BYTES={limit}; send a smaller "
        "input or raise the setting",
    )


class BodyLimit:
    """AGENT_MAX_BODY_BYTES and AGENT_BODY_TIMEOUT_SECONDS for one route."""

    def __init__(self, limit: int, timeout: float = 30.0) -> None:
        self.limit = limit
        self.timeout = timeout

    def check_declared(self, request: Request) -> None:
        """Refuse an oversized `Content-Length` before anything else runs."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise too_large(self.limit)

    async def read(self, request: Request) -> bytes:
        """The body, stopping as soon as it passes the limit (chunked bodies included)."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.limit:
                        raise too_large(self.limit)
                    chunks.append(chunk)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise ApiError(
                408,
                "body_timeout",
                f"the request body did not arrive within AGENT_BODY_TIMEOUT_SECONDS="
                f"{self.timeout:g} ({size} bytes read); send it faster or raise the setting",
                headers={"Connection": "close"},
            ) from None
        except ClientDisconnect:
            log.info("the caller disconnected while sending the body (%d bytes read)", size)
            raise ApiError(
                CLIENT_CLOSED_REQUEST,
                "client_disconnected",
                "the caller disconnected while sending the body",
            ) from None
        return b"".join(chunks)
