"""The coordinator owns each run's top-level span, and sends that span's context."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.cli import main
from coordinator.runner import Experiment, run_experiment
from coordinator.tracing import RunSpans
from tests.live import live_server
from tests.processes import ROOT


def attributes(span: ReadableSpan) -> Mapping[str, Any]:
    assert span.attributes is not None
    return span.attributes


def capture_app(seen: list[dict[str, str]]) -> Starlette:
    async def invoke(request: Request) -> Response:
        seen.append(dict(request.headers))
        body = await request.json()
        fields = {key: value for key, value in body.items() if key != "arize_metadata"}
        status = 500 if fields["goal"] == "fail" else 200  # the flat shape, the default
        return JSONResponse({"echo": fields}, status_code=status)

    return Starlette(routes=[Route("/invoke", invoke, methods=["POST"])])


def test_traceparent_is_the_run_spans_context() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[dict[str, str]] = []
    rows = [{"q": "Tokyo"}, {"q": "fail"}]
    with live_server(capture_app(seen)) as base:
        experiment = Experiment(
            url=base + "/invoke",
            template={"goal": "{{dataset.q}}"},
            spans=RunSpans(provider),
            retries=0,
            project_name="trips",
        )
        output = io.StringIO()
        asyncio.run(run_experiment(experiment, iter(rows), output))
    results = {r["request"]["goal"]: r for r in map(json.loads, output.getvalue().splitlines())}
    spans = {attributes(span)["arize.run_id"]: span for span in exporter.get_finished_spans()}
    assert len(spans) == 2
    for headers in seen:
        _, trace_id, span_id, flags = headers["traceparent"].split("-")
        span = next(s for s in spans.values() if format(s.context.span_id, "016x") == span_id)
        assert format(span.context.trace_id, "032x") == trace_id
        assert int(flags, 16) & 1 == 1  # sampled (the SDK also sets the random-id bit)
        assert span.parent is None  # the top of the tree, as Arize's run span is
    ok, failed = spans[results["Tokyo"]["run_id"]], spans[results["fail"]["run_id"]]
    assert ok.name == "experiment_run"
    assert attributes(ok)["openinference.span.kind"] == "CHAIN"
    assert attributes(ok)["arize.experiment_id"] == experiment.experiment_id
    assert attributes(ok)["arize.project_name"] == "trips"
    assert json.loads(str(attributes(ok)["input.value"])) == {"goal": "Tokyo"}
    assert json.loads(str(attributes(ok)["output.value"])) == {"echo": {"goal": "Tokyo"}}
    assert results["Tokyo"]["trace_id"] == format(ok.context.trace_id, "032x")
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(failed)["http.response.status_code"] == 500


def test_cli_exports_run_spans_over_otlp_http(tmp_path: Path) -> None:
    """The real OTLP/HTTP exporter, received by a server decoding the OTLP protobuf."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        return Response(status_code=200)

    seen: list[dict[str, str]] = []
    collector = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    with live_server(collector) as otlp, live_server(capture_app(seen)) as endpoint:
        code = main(
            [
                "coordinator",
                "run",
                "--url",
                endpoint + "/invoke",
                "--dataset",
                str(ROOT / "coordinator" / "samples" / "trips.csv"),
                "--template",
                '{"goal": "{{dataset.question}}"}',
                "--results",
                str(tmp_path / "r.jsonl"),
                "--otlp-endpoint",
                otlp + "/v1/traces",
                "--project",
                "trips",
            ]
        )
    assert code == 0
    arrivals: list[tuple[int, Any]] = [
        (position, span)
        for position, message in enumerate(received)
        for resource_spans in message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    spans = [span for _, span in arrivals if span.name == "experiment_run"]
    assert len(spans) == 4
    sent_span_ids = {headers["traceparent"].split("-")[2] for headers in seen}
    assert {span.span_id.hex() for span in spans} == sent_span_ids
    # Each run's `send` span arrived on its own, before its run span: Phoenix files the trace
    # under the project of its first span, so the endpoint's spans join the coordinator's.
    run_arrival = {span.span_id: position for position, span in arrivals if span in spans}
    sends = [(position, span) for position, span in arrivals if span.name == "send"]
    assert sorted(span.parent_span_id.hex() for _, span in sends) == sorted(sent_span_ids)
    for position, send in sends:
        assert position < run_arrival[send.parent_span_id]
    resource = received[0].resource_spans[0].resource
    attributes = {a.key: a.value.string_value for a in resource.attributes}
    assert attributes["openinference.project.name"] == "trips"
