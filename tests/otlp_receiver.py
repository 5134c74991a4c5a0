"""A real OTLP/HTTP receiver for tests: decodes the protobuf the exporters send, keeps headers."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class ReceivedSpan:
    headers: dict[str, str]  # of the export request that carried the span
    resource: dict[str, Any]
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value_of(item) for item in value.array_value.values)
    return getattr(value, kind) if kind else None


def mapping(attributes: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(attributes)
    return {item.key: value_of(item.value) for item in items}


class OtlpReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.app = Starlette(routes=[Route("/v1/traces", self._traces, methods=["POST"])])

    async def _traces(self, request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        headers = {name.lower(): value for name, value in request.headers.items()}
        received = [
            ReceivedSpan(
                headers=headers,
                resource=mapping(resource_spans.resource.attributes),
                name=span.name,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_id=span.parent_span_id.hex() or None,
                attributes=mapping(span.attributes),
            )
            for resource_spans in message.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self._spans.extend(received)
        body = ExportTraceServiceResponse().SerializeToString()
        return Response(body, media_type="application/x-protobuf")

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)
