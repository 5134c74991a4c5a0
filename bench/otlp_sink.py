"""A local OTLP/HTTP trace receiver for the benchmark: `python -m bench.otlp_sink --port N`.

It answers POST /v1/traces (protobuf, compressed or not) with 200 and an empty
ExportTraceServiceResponse, counts the spans of each request by the `service.name` of their
resource, and shows the counts at GET /count as JSON:

    {"spans": 1234, "exports": 5, "by_service": {"bench-ours-otlp": 1234},
     "rejected": 0, "bytes": 567890, "cpu_seconds": 0.12}

`rejected` counts POSTs it could not read (wrong path, content type or payload): an exporter
pointed at the wrong place shows up there instead of as silence. `cpu_seconds` is this
process's own CPU time, so the benchmark can tell how much of the machine the sink took.

It runs as its own process next to the servers under test; on a 2-core machine it competes with
them and with wrk for the same cores, a cost a real deployment pays in its collector instead.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterable, Sequence

import uvloop
from aiohttp import web
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

TRACES_PATH = "/v1/traces"
COUNT_PATH = "/count"
PROTOBUF = "application/x-protobuf"
MAX_BODY = 64 * 1024 * 1024  # the SDK exporter's own default limit; aiohttp's is 1 MiB
EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()  # b"": no partial success


class Counts:
    """What the sink has received since it started."""

    def __init__(self) -> None:
        self.spans = 0
        self.exports = 0
        self.rejected = 0
        self.bytes = 0
        self.by_service: Counter[str] = Counter()

    def add(self, request: ExportTraceServiceRequest, size: int) -> None:
        self.exports += 1
        self.bytes += size
        for resource_spans in request.resource_spans:
            service = service_name(resource_spans.resource.attributes)
            spans = sum(len(scope.spans) for scope in resource_spans.scope_spans)
            self.by_service[service] += spans
            self.spans += spans

    def as_json(self) -> dict[str, object]:
        return {
            "spans": self.spans,
            "exports": self.exports,
            "by_service": dict(self.by_service),
            "rejected": self.rejected,
            "bytes": self.bytes,
            "cpu_seconds": round(time.process_time(), 3),
        }


def service_name(attributes: Iterable[KeyValue]) -> str:
    for attribute in attributes:
        if attribute.key == "service.name":
            return attribute.value.string_value
    return "(no service.name)"


def make_app() -> web.Application:
    counts = Counts()

    async def receive(request: web.Request) -> web.Response:
        if request.content_type != PROTOBUF:
            counts.rejected += 1
            return web.Response(status=415, text=f"only {PROTOBUF} is accepted")
        data = await request.read()  # aiohttp undoes a gzip or deflate Content-Encoding
        try:
            message = ExportTraceServiceRequest.FromString(data)
        except DecodeError as exc:
            counts.rejected += 1
            return web.Response(status=400, text=f"cannot decode the request: {exc}")
        counts.add(message, len(data))
        return web.Response(body=EMPTY_RESPONSE, content_type=PROTOBUF)

    async def count(_: web.Request) -> web.Response:
        return web.json_response(counts.as_json())

    async def elsewhere(_: web.Request) -> web.Response:
        counts.rejected += 1
        return web.Response(status=404, text=f"this sink receives POST {TRACES_PATH} only")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(TRACES_PATH, receive)
    app.router.add_get(COUNT_PATH, count)
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    return app


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.otlp_sink",
        description="A local OTLP/HTTP trace receiver that counts spans (GET /count).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
