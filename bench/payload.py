"""The one request every benchmark sends: Arize's envelope around a realistic templated body."""

from __future__ import annotations

import json
import secrets
from typing import Any

GOAL = "Plan a 3-day trip to Tokyo"

ENVELOPE: dict[str, Any] = {
    "input": {"goal": GOAL, "config": {"model": "m", "max_turns": 12}},
    "arize_metadata": {
        "dataset_id": "RGF0YXNldDox",
        "experiment_id": "RXhwZXJpbWVudDox",
        "run_id": "RXhwZXJpbWVudFJ1bjox",
        "example_id": "RGF0YXNldEV4YW1wbGU6MQ==",
        "space_id": "U3BhY2U6MQ==",
        "project_name": "bench",
    },
}

BODY: bytes = json.dumps(ENVELOPE, separators=(",", ":")).encode()

# What every agent of bench.agents and the seed app answer to BODY.
EXPECTED: dict[str, Any] = {"final_response": f"Done: {GOAL}", "tool_calls": [], "trace_id": None}


def new_api_key() -> str:
    """A random key of 43 characters, new for each run."""
    return secrets.token_urlsafe(32)


def request_headers(api_key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
