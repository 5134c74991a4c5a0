"""The credential check, as a table of what callers actually send."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tests.conftest import KEY, OLD_KEY, AppFactory, client_for, envelope

pytestmark = pytest.mark.anyio

Headers = list[tuple[str, str]]

AUTH_TABLE: list[tuple[str, Headers, int, str]] = [
    ("bearer", [("Authorization", f"Bearer {KEY}")], 200, ""),
    ("lowercase scheme", [("Authorization", f"bearer {KEY}")], 200, ""),
    ("uppercase scheme", [("Authorization", f"BEARER {KEY}")], 200, ""),
    ("api-key header", [("X-API-Key", KEY)], 200, ""),
    ("api-key header, any case", [("x-api-key", KEY)], 200, ""),
    ("old key still listed", [("Authorization", f"Bearer {OLD_KEY}")], 200, ""),
    ("surrounding whitespace", [("Authorization", f"  Bearer   {KEY}  ")], 200, ""),
    (
        "proxy token in Authorization, key in X-API-Key",
        [("Authorization", "Bearer platform-identity-token"), ("X-API-Key", KEY)],
        200,
        "",
    ),
    ("missing", [], 401, "missing credentials"),
    ("wrong key", [("Authorization", "Bearer not-the-key-cccccccccccccccc")], 401, "invalid"),
    ("wrong key in api-key header", [("X-API-Key", "not-the-key")], 401, "invalid"),
    ("basic scheme", [("Authorization", f"Basic {KEY}")], 401, "Basic scheme"),
    ("raw key without scheme", [("Authorization", KEY)], 401, "no Bearer scheme"),
    ("empty token", [("Authorization", "Bearer ")], 401, "empty"),
    ("scheme only", [("Authorization", "Bearer")], 401, "empty"),
    ("empty api-key header", [("X-API-Key", "")], 401, "empty"),
    ("whitespace inside token", [("Authorization", f"Bearer {KEY} extra")], 401, "whitespace"),
    ("key prefix", [("Authorization", f"Bearer {KEY[:-1]}")], 401, "invalid"),
    ("key with suffix", [("Authorization", f"Bearer {KEY}x")], 401, "invalid"),
    (
        "duplicated Authorization",
        [("Authorization", f"Bearer {KEY}"), ("Authorization", f"Bearer {KEY}")],
        401,
        "duplicated",
    ),
    ("duplicated api-key header", [("X-API-Key", KEY), ("X-API-Key", KEY)], 401, "duplicated"),
]


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [pytest.param(h, s, m, id=name) for name, h, s, m in AUTH_TABLE],
)
async def test_auth_table(
    build_app: AppFactory, headers: Headers, status: int, message: str
) -> None:
    app = build_app(api_keys=[KEY, OLD_KEY])
    async with client_for(app) as client:
        response = await client.post("/invoke", json=envelope(), headers=httpx.Headers(headers))
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="agent-endpoint"'
        error = response.json()["error"]
        assert error["type"] == "unauthorized"
        assert message in error["message"]
        # Nothing presented or configured is echoed, not even in part.
        for secret in (KEY, OLD_KEY, "not-the-key-cccccccccccccccc", "platform-identity-token"):
            assert secret[-12:] not in response.text


async def test_rotated_out_key_is_refused(build_app: AppFactory) -> None:
    """After rotation the old key is removed from AGENT_API_KEYS and stops working."""
    async with client_for(build_app(api_keys=[KEY])) as client:
        old = await client.post(
            "/invoke", json=envelope(), headers={"Authorization": f"Bearer {OLD_KEY}"}
        )
        new = await client.post(
            "/invoke", json=envelope(), headers={"Authorization": f"Bearer {KEY}"}
        )
    assert (old.status_code, new.status_code) == (401, 200)


async def test_custom_api_key_header(build_app: AppFactory) -> None:
    async with client_for(build_app(api_key_header="X-Agent-Token")) as client:
        custom = await client.post("/invoke", json=envelope(), headers={"X-Agent-Token": KEY})
        default = await client.post("/invoke", json=envelope(), headers={"X-API-Key": KEY})
    assert custom.status_code == 200
    assert default.status_code == 401
    assert "X-Agent-Token: <key>" in default.json()["error"]["message"]


MODE_TABLE: list[tuple[str, str, Headers, int, str]] = [
    ("bearer", "bearer key", [("Authorization", f"Bearer {KEY}")], 200, ""),
    (
        "bearer",
        "key in the api-key header is not looked at",
        [("X-API-Key", KEY)],
        401,
        "send `Authorization: Bearer <key>` (Arize",
    ),
    (
        "bearer",
        "a second api-key header does not count as a duplicate",
        [("Authorization", f"Bearer {KEY}"), ("X-API-Key", "a"), ("X-API-Key", "b")],
        200,
        "",
    ),
    ("header", "api-key header", [("X-API-Key", KEY)], 200, ""),
    (
        "header",
        "bearer key is not looked at",
        [("Authorization", f"Bearer {KEY}")],
        401,
        "send `X-API-Key: <key>` (Arize",
    ),
    (
        "header",
        "Authorization left to a platform in front",
        [("Authorization", "Basic cGxhdGZvcm06dG9rZW4="), ("X-API-Key", KEY)],
        200,
        "",
    ),
]


@pytest.mark.parametrize(
    ("mode", "headers", "status", "message"),
    [pytest.param(mode, h, s, m, id=f"{mode}: {name}") for mode, name, h, s, m in MODE_TABLE],
)
async def test_auth_mode_accepts_one_form(
    build_app: AppFactory, mode: str, headers: Headers, status: int, message: str
) -> None:
    async with client_for(build_app(auth_mode=mode)) as client:
        response = await client.post("/invoke", json=envelope(), headers=httpx.Headers(headers))
        security = (await client.get("/openapi.json")).json()["components"]["securitySchemes"]
    assert response.status_code == status, response.text
    assert message in response.text
    assert list(security) == (["bearer"] if mode == "bearer" else ["apiKey"])


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        ({"X-Team": "alpha-team-secret-1"}, 200, ""),
        ({}, 401, "required header X-Team is missing"),
        ({"X-Team": "beta"}, 401, "required header X-Team is wrong"),
    ],
    ids=["present", "missing", "wrong"],
)
async def test_required_custom_headers(
    build_app: AppFactory, extra: dict[str, str], status: int, message: str
) -> None:
    app = build_app(required_headers={"X-Team": "alpha-team-secret-1"})
    async with client_for(app) as client:
        response = await client.post(
            "/invoke", json=envelope(), headers={"Authorization": f"Bearer {KEY}", **extra}
        )
    assert response.status_code == status
    if status == 401:
        assert message in response.json()["error"]["message"]
        assert "alpha-team-secret-1" not in response.text


async def test_auth_runs_before_the_body_is_read(build_app: AppFactory) -> None:
    """An unauthenticated caller learns nothing about the body: no 400/422 before 401."""
    async with client_for(build_app()) as client:
        response = await client.post(
            "/invoke", content=b"not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 401


async def test_auth_disabled_accepts_anyone_and_warns(
    build_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agent_endpoint"):
        app = build_app(api_keys=[], auth_disabled=True)
    assert "AUTHENTICATION IS DISABLED" in caplog.text
    async with client_for(app) as client:
        response = await client.post("/invoke", json=envelope())
    assert response.status_code == 200


async def test_keys_never_reach_logs(
    build_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def echo_error(input: dict[str, Any], ctx: Any) -> None:  # noqa: A002
        raise RuntimeError(f"upstream refused key {KEY}")

    with caplog.at_level(logging.DEBUG):
        async with client_for(build_app(agent=echo_error)) as client:
            await client.post("/invoke", json=envelope(), headers={"X-API-Key": "wrong-key"})
            response = await client.post("/invoke", json=envelope(), headers={"X-API-Key": KEY})
    assert response.status_code == 500
    assert KEY not in response.text
    assert "[redacted]" in response.json()["error"]["message"]
    assert "wrong-key" not in caplog.text


def test_keys_are_compared_in_constant_time_and_without_short_circuit() -> None:
    """Timing is not observable from a test on a shared machine, so this pins the structure:
    every comparison of a presented value with a secret goes through hmac.compare_digest, and
    the key loop runs every comparison (`|=`, no early return). Replacing either with `==` or an
    early `return True` fails here."""
    import ast  # noqa: PLC0415
    import inspect  # noqa: PLC0415
    import textwrap  # noqa: PLC0415

    from app.auth import Authenticator  # noqa: PLC0415

    for method in (Authenticator._matches_any, Authenticator._check_required):
        tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
        compares = [node for node in ast.walk(tree) if isinstance(node, ast.Compare)]
        secret_words = ("key", "expected", "candidate", "secret", "token")
        equalities = [
            ast.unparse(c)
            for c in compares
            if any(isinstance(op, ast.Eq | ast.NotEq) for op in c.ops)
            and any(word in ast.unparse(c) for word in secret_words)
        ]
        assert equalities == []
        calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        assert "hmac.compare_digest" in calls
    matcher = ast.parse(textwrap.dedent(inspect.getsource(Authenticator._matches_any)))
    loops = [node for node in ast.walk(matcher) if isinstance(node, ast.For)]
    assert loops
    for loop in loops:
        assert not any(isinstance(node, ast.Return | ast.Break) for node in ast.walk(loop))
