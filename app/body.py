"""Request body limits: AGENT_MAX_BODY_BYTES, enforced from `Content-Length` and while streaming."""

from __future__ import annotations

from fastapi import Request

from app.errors import ApiError


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"the request body is larger than AGENT_MAX_BODY_BYTES={limit}; send a smaller "
        "input or raise the setting",
    )


class BodyLimit:
    """AGENT_MAX_BODY_BYTES for one route: a declared size first, then the streamed bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def check_declared(self, request: Request) -> None:
        """Refuse an oversized `Content-Length` before anything else runs."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise too_large(self.limit)

    async def read(self, request: Request) -> bytes:
        """The body, stopping as soon as it passes the limit (chunked bodies included)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limit:
                raise too_large(self.limit)
            chunks.append(chunk)
        return b"".join(chunks)
