"""Stand-in for Arize's REST log API: `POST /v1/log`, enforcing the documented contract.

Authentication: the API key in the `Authorization` header, the space key in the body. The body
must be Arize's `public.Record` in the protobuf JSON mapping (`coordinator/record_schema.py`):
a record that does not fit gets a 400 saying where and why. On top of the schema, the
documented checks: a record holds a prediction or an actual; labels are `numeric` (a double)
or `score_categorical` (a category and a float score); each feature and tag sets one of its
typed values; timestamps lie between now and 90 days back. Each refusal of the response-code
table answers with the table's status and exact message. Accepted records are kept in memory,
as they came, keyed by prediction id.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from coordinator import record_schema
from coordinator.record_schema import SchemaError

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
# Not in the table: a body that is not JSON, a label of another type, a record off the schema.
INVALID_BODY = (400, "request body must be a JSON object")
INVALID_LABEL = (
    400,
    'label must be {"numeric": <number>} or '
    '{"score_categorical": {"score_category": {"category": <string>, "score": <number>}}}',
)


def invalid_record(error: SchemaError) -> tuple[int, str]:
    """The 400 for a record Arize's schema refuses: the path and the fix."""
    return (400, f"invalid record: {error}")


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
        return [r for r in self.records if _either(r, "prediction_id") == prediction_id]


def _either(record: dict[str, Any], name: str) -> Any:
    """A field under its proto name or its JSON name (the mapping accepts both)."""
    found = record.get(name)
    return found if found is not None else record.get(record_schema.json_name(name))


def check_schema(record: Any) -> dict[str, Any]:
    """The record read as Arize's `Record` (see record_schema.check); RefusedError if it does
    not fit."""
    try:
        return record_schema.check(record)
    except SchemaError as error:
        raise RefusedError(invalid_record(error)) from None


def check_record(record: Any, now: float) -> None:
    """Raise the RefusedError Arize would answer for the record's content; return if it is valid."""
    if not isinstance(record, dict):
        raise RefusedError(INVALID_BODY)
    parsed = check_schema(record)
    pairs = [parsed] + (
        [parsed["prediction_and_actual"]] if "prediction_and_actual" in parsed else []
    )
    parts = [pair[name] for pair in pairs for name in ("prediction", "actual") if name in pair]
    if not parts:
        raise RefusedError(NO_PREDICTION_OR_ACTUAL)
    for part in parts:
        if "label" not in part:
            raise RefusedError(NO_PREDICTION_OR_ACTUAL)
        _check_label(part["label"])
        _check_features(part.get("features", {}))
        _check_features(part.get("tags", {}))
        _check_timestamp(part.get("timestamp"), now)


def _check_label(label: dict[str, Any]) -> None:
    """Read by the schema already: only which label types, and finite numbers."""
    if "numeric" in label:
        if not math.isfinite(label["numeric"]):
            raise RefusedError(INVALID_LABEL)
        return
    inner = label.get("score_categorical", {}).get("score_category", {})
    if not ("category" in inner and "score" in inner and math.isfinite(inner["score"])):
        raise RefusedError(INVALID_LABEL)


def _check_features(values: dict[str, dict[str, Any]]) -> None:
    """Each feature and tag must set one of a Value's types (the schema allows none)."""
    if any(not value for value in values.values()):
        raise RefusedError(INVALID_FEATURE_TYPE)


def _check_timestamp(seconds: float | None, now: float) -> None:
    """Seconds since the epoch, read from the RFC 3339 string; absent means now."""
    if seconds is not None and not now - NINETY_DAYS <= seconds <= now + CLOCK_SKEW:
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
            record = record_schema.loads(await request.body())
        except SchemaError as error:
            raise RefusedError(invalid_record(error)) from None
        except ValueError:  # not UTF-8, or not JSON
            raise RefusedError(INVALID_BODY) from None
        space_key = _either(record, "space_key") if isinstance(record, dict) else None
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
