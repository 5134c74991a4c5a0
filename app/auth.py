"""The credential check, run on headers alone, before the body is read.

Accepted: `Authorization: Bearer <key>` or `<AGENT_API_KEY_HEADER>: <key>` with any key of
AGENT_API_KEYS (list old and new during a rotation); AGENT_AUTH_MODE narrows that to one form.
A request passes when any credential it presents matches: a platform in front of the service
(Cloud Run IAM, an API gateway) may put its own token in `Authorization` while Arize sends the
key in `X-API-Key`. Every comparison is constant-time, and no key or presented value is ever
logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from fastapi import Request

from app.errors import ApiError
from app.settings import Settings

REALM = 'Bearer realm="agent-endpoint"'
KNOWN_SCHEMES = frozenset({b"basic", b"digest", b"token", b"apikey", b"api-key", b"negotiate"})


class Authenticator:
    """Built from the settings once, at app creation; called with each request."""

    def __init__(self, settings: Settings) -> None:
        self.disabled = settings.auth_disabled and not settings.api_keys
        self._keys = [key.get_secret_value().encode() for key in settings.api_keys]
        self._key_header = settings.api_key_header
        self._key_header_raw = settings.api_key_header.lower().encode("latin-1")
        # The header names read for credentials; a form the mode leaves out is not looked at.
        self._bearer = settings.auth_mode in {"any", "bearer"}
        self._header = settings.auth_mode in {"any", "header"}
        self._forms = " or ".join(
            form
            for form, used in (
                ("`Authorization: Bearer <key>`", self._bearer),
                (f"`{self._key_header}: <key>`", self._header),
            )
            if used
        )
        self._required = {
            name: (name.lower().encode("latin-1"), value.get_secret_value().encode())
            for name, value in settings.required_headers.items()
        }

    def __call__(self, request: Request) -> None:
        headers: Sequence[tuple[bytes, bytes]] = request.scope["headers"]
        self._check_required(headers)
        if self.disabled:
            return
        authorization = _values(headers, b"authorization") if self._bearer else []
        api_key = _values(headers, self._key_header_raw) if self._header else []
        if len(authorization) > 1 or len(api_key) > 1:
            raise self._reject(
                "duplicated credential header: send exactly one "
                + ("Authorization" if len(authorization) > 1 else self._key_header)
                + " header"
            )
        if not authorization and not api_key:
            raise self._reject(
                f"missing credentials: send {self._forms} (Arize: agent configuration → Headers)"
            )
        candidates: list[bytes] = []
        problem = ""
        if authorization:
            token, problem = _bearer_token(authorization[0])
            if token is not None:
                candidates.append(token)
        if api_key:
            value = api_key[0].strip()
            if value:
                candidates.append(value)
            else:
                problem = problem or f"the {self._key_header} header is empty"
        if candidates and self._matches_any(candidates):
            return
        raise self._reject(
            problem
            or "invalid credentials: the key is not one of AGENT_API_KEYS (after a key "
            "rotation, update the header value in Arize's agent configuration)"
        )

    def key_fingerprint(self, request: Request) -> str | None:
        """A hash of the configured key this (authenticated) request presented, or None with
        auth off. Stored with a job for AGENT_JOB_ACCESS=submitter; the key itself never is."""
        headers: Sequence[tuple[bytes, bytes]] = request.scope["headers"]
        candidates: list[bytes] = []
        if self._bearer:
            for value in _values(headers, b"authorization"):
                token, _ = _bearer_token(value)
                if token is not None:
                    candidates.append(token)
        if self._header:
            candidates += [v.strip() for v in _values(headers, self._key_header_raw) if v.strip()]
        found: bytes | None = None
        for key in self._keys:
            matched = False
            for candidate in candidates:
                matched |= hmac.compare_digest(candidate, key)  # every comparison runs
            if matched and found is None:
                found = key
        return fingerprint(found) if found is not None else None

    def _check_required(self, headers: Sequence[tuple[bytes, bytes]]) -> None:
        for name, (raw_name, expected) in self._required.items():
            values = _values(headers, raw_name)
            if len(values) != 1 or not hmac.compare_digest(values[0].strip(), expected):
                state = "missing" if not values else "wrong or repeated"
                raise self._reject(f"required header {name} is {state}")

    def _matches_any(self, candidates: list[bytes]) -> bool:
        matched = False
        for candidate in candidates:
            for key in self._keys:
                # No short-circuit: every comparison runs, so timing says nothing.
                matched |= hmac.compare_digest(candidate, key)
        return matched

    @staticmethod
    def _reject(message: str) -> ApiError:
        return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": REALM})


def fingerprint(key: bytes) -> str:
    """SHA-256 of an API key, under a label of its own: enough to tell keys apart, useless
    to present as a credential."""
    return hashlib.sha256(b"agent-endpoint job submitter\0" + key).hexdigest()


def _values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def _bearer_token(value: bytes) -> tuple[bytes | None, str]:
    """The token of a Bearer credential, or why there is none. The scheme is case-insensitive."""
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        # Echo the scheme only when it is a well-known one: a raw key pasted without
        # "Bearer " would otherwise come back in the error body.
        known = scheme.decode("latin-1") if scheme.lower() in KNOWN_SCHEMES else None
        what = f"the {known} scheme" if known else "no Bearer scheme"
        return None, f"Authorization has {what}; send `Authorization: Bearer <key>`"
    token = token.strip()
    if not token:
        return None, "the Bearer token is empty; send `Authorization: Bearer <key>`"
    if any(char in token for char in b" \t"):
        return None, "the Bearer token contains whitespace; send the key alone after 'Bearer '"
    return token, ""
