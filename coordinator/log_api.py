"""Stand-in for Arize's REST log API: `POST /v1/log`, enforcing the documented contract.

Authentication: the API key in the `Authorization` header, the space key in the body. A record
must hold a prediction or an actual; labels are `numeric` (a double) or `score_categorical`
(a category and a float score); features are strings, numbers or booleans; timestamps lie
between now and 90 days back. Each refusal answers with the status and the exact message of
Arize's response-code table. Accepted records are kept in memory, keyed by prediction id.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

NINETY_DAYS = 90 * 24 * 3600
CLOCK_SKEW = 60.0  # seconds a timestamp may run ahead of the stand-in's clock

# The response-code table of Arize's REST log API, word for word.
OK = (200, "OK")
CANNOT_ACCESS_HEADERS = (403, "cannot access request headers")
MISSING_AUTHORIZATION = (403, "must provide authorization header")
INVALID_SPACE_KEY = (403, "unable to validate authorization header")
INVALID_API_KEY = (403, "invalid api-key")
NO_PREDICTION_OR_ACTUAL = (400, "log must include prediction or actual")
INVALID_FEATURE_TYPE = (400, "invalid feature type")
TIMESTAMP_OUT_OF_RANGE = (400, "timestamp must range from now back to T-90 days")
INTERNAL_ERROR = (500, "Internal service error, contact Arize")
# Not in the table: a body that is not a JSON object, or a label of an unknown type.
INVALID_BODY = (400, "request body must be a JSON object")
INVALID_LABEL = (400, "label must be numeric or score_categorical")


class RefusedError(Exception):
    def __init__(self, answer: tuple[int, str]) -> None:
        super().__init__(answer[1])
        self.status, self.message = answer


@dataclass
class LogStore:
    """What the stand-in accepted, and the faults it is told to inject."""

    api_keys: frozenset[str]
    space_keys: frozenset[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    fail_next: int = 0

    def by_prediction_id(self, prediction_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("prediction_id") == prediction_id]


def check_record(record: Any, now: float) -> None:
    """Raise the RefusedError Arize would answer for the record's content; return if it is valid."""
    if not isinstance(record, dict):
        raise RefusedError(INVALID_BODY)
    parts = [record[name] for name in ("prediction", "actual") if record.get(name) is not None]
    if not parts:
        raise RefusedError(NO_PREDICTION_OR_ACTUAL)
    for part in parts:
        if not isinstance(part, dict) or "label" not in part:
            raise RefusedError(NO_PREDICTION_OR_ACTUAL)
        _check_label(part["label"])
        _check_features(part.get("features"))
        _check_features(part.get("tags"))
        _check_timestamp(part.get("timestamp"), now)


def _check_label(label: Any) -> None:
    if not isinstance(label, dict) or len(label) != 1:
        raise RefusedError(INVALID_LABEL)
    if "numeric" in label:
        value = label["numeric"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise RefusedError(INVALID_LABEL)
        return
    category = label.get("score_categorical", {})
    inner = category.get("score_category") if isinstance(category, dict) else None
    if not (
        isinstance(inner, dict)
        and isinstance(inner.get("category"), str)
        and isinstance(inner.get("score"), int | float)
        and not isinstance(inner.get("score"), bool)
    ):
        raise RefusedError(INVALID_LABEL)


def _check_features(features: Any) -> None:
    if features is None:
        return
    if not isinstance(features, dict):
        raise RefusedError(INVALID_FEATURE_TYPE)
    for value in features.values():
        if value is None or not isinstance(value, str | int | float | bool):
            raise RefusedError(INVALID_FEATURE_TYPE)


def _check_timestamp(timestamp: Any, now: float) -> None:
    """Protobuf JSON: an RFC 3339 string, or seconds since the epoch; absent means now."""
    if timestamp is None:
        return
    if isinstance(timestamp, str):
        try:
            seconds = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise RefusedError(TIMESTAMP_OUT_OF_RANGE) from None
    elif isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        seconds = float(timestamp)
    else:
        raise RefusedError(TIMESTAMP_OUT_OF_RANGE)
    if not now - NINETY_DAYS <= seconds <= now + CLOCK_SKEW:
        raise RefusedError(TIMESTAMP_OUT_OF_RANGE)


def create_log_api(store: LogStore, clock: Any = time.time) -> Starlette:
    """The ASGI app: `POST /v1/log`, plus `GET /v1/records` to read back what was accepted."""

    async def log(request: Request) -> Response:
        try:
            status, message = await _handle(request)
        except RefusedError as refusal:
            status, message = refusal.status, refusal.message
        store.answers.append(status)
        return PlainTextResponse(message, status_code=status)

    async def _handle(request: Request) -> tuple[int, str]:
        try:
            values = [
                v.decode("ascii") for k, v in request.scope["headers"] if k == b"authorization"
            ]
        except UnicodeDecodeError:
            raise RefusedError(CANNOT_ACCESS_HEADERS) from None
        if not values or not values[0].strip():
            raise RefusedError(MISSING_AUTHORIZATION)
        try:
            record = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RefusedError(INVALID_BODY) from None
        space_key = record.get("space_key") if isinstance(record, dict) else None
        if space_key not in store.space_keys:
            raise RefusedError(INVALID_SPACE_KEY)
        if values[0].strip() not in store.api_keys:
            raise RefusedError(INVALID_API_KEY)
        check_record(record, clock())
        if store.fail_next > 0:
            store.fail_next -= 1
            raise RefusedError(INTERNAL_ERROR)
        store.records.append(record)
        return OK

    async def records(request: Request) -> Response:
        prediction_id = request.query_params.get("prediction_id")
        found = store.by_prediction_id(prediction_id) if prediction_id else store.records
        return JSONResponse(found)

    return Starlette(
        routes=[
            Route("/v1/log", log, methods=["POST"]),
            Route("/v1/records", records, methods=["GET"]),
        ]
    )
