"""The one request every benchmark sends: Arize's envelope around a realistic templated body."""

from __future__ import annotations

import json
import secrets
from typing import Any

from app.envelope import EXAMPLE_WRAPPED

GOAL = "Plan a 3-day trip to Tokyo"

# The example envelope of the OpenAPI page: Arize's ids and the seed's templated body.
ENVELOPE: dict[str, Any] = EXAMPLE_WRAPPED
assert ENVELOPE["input"]["goal"] == GOAL  # noqa: S101

BODY: bytes = json.dumps(ENVELOPE, separators=(",", ":")).encode()

# What every agent of bench.agents and the seed app answer to BODY.
EXPECTED: dict[str, Any] = {"final_response": f"Done: {GOAL}", "tool_calls": [], "trace_id": None}


def new_api_key() -> str:
    """A random key of 43 characters, new for each run."""
    return secrets.token_urlsafe(32)


def request_headers(api_key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
