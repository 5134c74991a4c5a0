"""AGENT_MAX_BODY_BYTES: refused from Content-Length up front, and while streaming otherwise."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.conftest import AUTH, AppFactory, client_for, envelope

pytestmark = pytest.mark.anyio

LIMIT = 2048


async def test_declared_oversized_body_is_413_before_auth(build_app: AppFactory) -> None:
    async with client_for(build_app(max_body_bytes=LIMIT)) as client:
        response = await client.post(
            "/invoke",
            content=b"x" * (LIMIT + 1),
            headers={"Content-Type": "application/json"},  # no credentials at all
        )
    assert response.status_code == 413
    assert "AGENT_MAX_BODY_BYTES=2048" in response.json()["error"]["message"]


async def test_body_at_the_limit_is_accepted(build_app: AppFactory) -> None:
    body = envelope()
    raw = json.dumps(body)
    body["input"]["goal"] += " " * (LIMIT - len(raw))
    encoded = json.dumps(body).encode()
    assert len(encoded) == LIMIT
    async with client_for(build_app(max_body_bytes=LIMIT)) as client:
        response = await client.post(
            "/invoke", content=encoded, headers={**AUTH, "Content-Type": "application/json"}
        )
    assert response.status_code == 200


async def test_chunked_body_is_cut_off_while_streaming(build_app: AppFactory) -> None:
    """No Content-Length: the limit trips on the chunk that crosses it, not after reading all."""
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(100):
            sent.append(index)
            yield b" " * 1024

    async with client_for(build_app(max_body_bytes=LIMIT)) as client:
        response = await client.post(
            "/invoke", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert len(sent) < 10


async def test_server_keeps_serving_after_refusals(build_app: AppFactory) -> None:
    bad: list[tuple[bytes, int, str]] = [
        (b"x" * (LIMIT * 2), 413, "body_too_large"),
        (b"{", 400, "invalid_json"),
        (b"[]", 422, "invalid_envelope"),
    ]
    async with client_for(build_app(max_body_bytes=LIMIT)) as client:
        for content, status, kind in bad:
            refused = await client.post(
                "/invoke", headers={**AUTH, "Content-Type": "application/json"}, content=content
            )
            assert (refused.status_code, refused.json()["error"]["type"]) == (status, kind)
        ok = await client.post("/invoke", json=envelope(), headers=AUTH)
    assert ok.status_code == 200
