"""The request span on exported spans: W3C Trace Context, run ids everywhere, secrets nowhere."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.envelope import ArizeMetadata
from app.main import create_app
from app.tracing.request import _run_ids
from tests import agents
from tests.conftest import (
    AUTH,
    KEY,
    METADATA,
    OLD_KEY,
    PROVIDERS,
    client_for,
    envelope,
    make_settings,
)

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
OPEN_SCHEMA = {"input_schema_file": "tests/open_schema.json"}


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def parent_id(span: ReadableSpan) -> str | None:
    return f"{span.parent.span_id:016x}" if span.parent else None


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


async def call(
    pipeline: str,
    headers: list[tuple[str, str]] | None = None,
    body: dict[str, Any] | None = None,
    agent: Any = agents.echo,
    provider: trace.TracerProvider | None = None,
    **settings: Any,
) -> tuple[int, Any]:
    """One request to an app on `pipeline`'s provider (or `provider`)."""
    app = create_app(
        make_settings(**OPEN_SCHEMA, trace_pipeline=pipeline, **settings),
        agent=agent,
        tracer_provider=provider or PROVIDERS[pipeline],
    )
    async with client_for(app) as client:
        response = await client.post(
            "/invoke",
            json=body if body is not None else envelope(),
            headers=[*AUTH.items(), *(headers or [])],
        )
    return response.status_code, response.json()


async def request_span(
    exported: InMemorySpanExporter, pipeline: str, headers: list[tuple[str, str]]
) -> ReadableSpan:
    status, _ = await call(pipeline, headers)
    assert status == 200  # propagation headers never fail a request
    (span,) = exported.get_finished_spans()
    return span


# -- W3C Trace Context: https://www.w3.org/TR/trace-context/ test cases


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", VALID)],
        [("TraceParent", VALID)],  # header names are case-insensitive
        [("traceparent", f"cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-will-be-like")],
        [("traceparent", f"cc-{TRACE_ID}-{PARENT_ID}-01")],
    ],
    ids=["valid", "mixed-case-name", "future-version-with-fields", "future-version"],
)
async def test_a_valid_parent_is_continued_with_a_new_span_id(
    exported: InMemorySpanExporter, pipeline: str, headers: list[tuple[str, str]]
) -> None:
    span = await request_span(exported, pipeline, headers)
    assert hex_trace(span) == TRACE_ID
    assert parent_id(span) == PARENT_ID
    assert hex_span(span) != PARENT_ID
    assert span.parent is not None
    assert span.parent.is_remote


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("traceparent", VALID), ("traceparent", f"00-{'1' * 32}-{'2' * 16}-01")],
        [("traceparent", VALID.upper())],
        [("traceparent", f"00-{TRACE_ID.upper()}-{PARENT_ID}-01")],
        [("traceparent", f"00-{'0' * 32}-{PARENT_ID}-01")],
        [("traceparent", f"00-{TRACE_ID}-{'0' * 16}-01")],
        [("traceparent", f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01")],
        [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}0-01")],
        [("traceparent", f"00-{TRACE_ID[:-1]}g-{PARENT_ID}-01")],
        [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-0x")],
        [("traceparent", f"ff-{TRACE_ID}-{PARENT_ID}-01")],
        [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01-extra")],  # version 00 has 4 fields
        [("traceparent", "")],
        [("traceparent", "garbage")],
        [("tracestate", "rojo=00f067aa0ba902b7")],
    ],
    ids=[
        "missing",
        "duplicated",
        "uppercase",
        "uppercase-trace-id",
        "zero-trace-id",
        "zero-parent-id",
        "short-trace-id",
        "long-parent-id",
        "illegal-character",
        "illegal-flags",
        "version-ff",
        "version-00-extra-field",
        "empty",
        "garbage",
        "tracestate-only",
    ],
)
async def test_an_invalid_or_missing_parent_starts_a_new_trace(
    exported: InMemorySpanExporter, pipeline: str, headers: list[tuple[str, str]]
) -> None:
    span = await request_span(exported, pipeline, headers)
    assert span.parent is None
    assert hex_trace(span) not in {TRACE_ID, "1" * 32}
    assert span.context is not None
    assert span.context.trace_state == {}  # tracestate without traceparent is dropped


async def test_tracestate_is_kept_with_its_traceparent(
    exported: InMemorySpanExporter, pipeline: str
) -> None:
    state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    span = await request_span(exported, pipeline, [("traceparent", VALID), ("tracestate", state)])
    assert span.context is not None
    assert span.context.trace_state.to_header() == state
    assert span.parent is not None
    assert span.parent.trace_state.to_header() == state


async def test_an_unsampled_parent_is_respected(
    exported: InMemorySpanExporter, pipeline: str
) -> None:
    status, _ = await call(pipeline, [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-00")])
    assert status == 200
    assert exported.get_finished_spans() == ()


async def headers_agent(input: dict[str, Any], ctx: Any) -> dict[str, str]:  # noqa: A002
    """Answers with what the agent would hand on downstream."""
    headers: dict[str, str] = ctx.trace_headers()
    return headers


@pytest.mark.parametrize("flags", ["02", "03"], ids=["random-unsampled", "random-sampled"])
async def test_the_random_trace_id_flag_is_kept(
    exported: InMemorySpanExporter, pipeline: str, flags: str
) -> None:
    """W3C Trace Context Level 2: flag 0x02 says the trace id is random; it goes on as it came."""
    status, body = await call(
        pipeline, [("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-{flags}")], agent=headers_agent
    )
    assert status == 200
    version, trace_id, span_id, sent = body["traceparent"].split("-")
    assert (version, trace_id, sent) == ("00", TRACE_ID, flags)
    assert span_id != PARENT_ID
    spans = exported.get_finished_spans()
    if flags == "02":
        assert spans == ()  # unsampled: nothing recorded
        return
    (span,) = spans
    assert span.context is not None
    assert span.context.trace_flags == 0x03
    assert hex_span(span) == span_id


TRACESTATES = [
    "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    "rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE",  # optional whitespace
    "rojo=00f067aa0ba902b7,,congo=t61rcWkgMzE",  # an empty member
    "\tfoo@tenant=bar\t,rojo=1",
]


@pytest.mark.parametrize("state", TRACESTATES, ids=["plain", "ows", "empty-member", "tabs"])
async def test_with_no_exporter_an_unchanged_traceparent_carries_its_tracestate_as_it_came(
    pipeline: str, state: str
) -> None:
    """Nothing recorded, so the traceparent handed on is the caller's own, and so must the
    tracestate be, byte for byte (a vendor MUST NOT modify the entries it does not own)."""
    status, body = await call(
        pipeline,
        [("traceparent", VALID), ("tracestate", state)],
        agent=headers_agent,
        provider=trace.NoOpTracerProvider(),  # what install_tracer_provider keeps then
    )
    assert status == 200
    assert body["traceparent"] == VALID
    assert body["tracestate"] == state


async def test_a_span_of_ours_hands_on_the_tracestates_entries(
    exported: InMemorySpanExporter, pipeline: str
) -> None:
    """A new span id: the SDK's TraceState, the same entries as the caller's."""
    state = TRACESTATES[1]
    status, body = await call(
        pipeline, [("traceparent", VALID), ("tracestate", state)], agent=headers_agent
    )
    assert status == 200
    (span,) = exported.get_finished_spans()
    assert body["traceparent"] == f"00-{TRACE_ID}-{hex_span(span)}-01"
    assert body["tracestate"] == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


async def test_an_invalid_tracestate_is_not_handed_on(pipeline: str) -> None:
    status, body = await call(
        pipeline,
        [("traceparent", VALID), ("tracestate", "not a member")],
        agent=headers_agent,
        provider=trace.NoOpTracerProvider(),
    )
    assert status == 200
    assert body == {"traceparent": VALID}


# -- the request span


async def test_the_request_span_is_an_agent_span_with_input_and_output(
    exported: InMemorySpanExporter,
    pipeline: str,
) -> None:
    status, body = await call(pipeline, [("traceparent", VALID)])
    assert status == 200
    (span,) = exported.get_finished_spans()
    attributes = attrs(span)
    assert span.kind is SpanKind.SERVER
    assert span.name == "echo"  # the agent's name
    assert attributes["openinference.span.kind"] == "AGENT"
    assert json.loads(str(attributes["input.value"])) == envelope()["input"]
    assert attributes["input.mime_type"] == "application/json"
    assert json.loads(str(attributes["output.value"])) == body
    assert attributes["output.mime_type"] == "application/json"
    assert attributes["http.response.status_code"] == 200
    assert json.loads(str(attributes["metadata"])) == METADATA
    assert span.status.status_code is StatusCode.UNSET


async def test_input_and_output_can_be_turned_off(
    exported: InMemorySpanExporter, pipeline: str
) -> None:
    await call(pipeline, trace_io=False)
    (span,) = exported.get_finished_spans()
    assert not {"input.value", "output.value"} & set(attrs(span))
    assert json.loads(str(attrs(span)["metadata"])) == METADATA


async def test_long_input_and_output_are_cut(exported: InMemorySpanExporter, pipeline: str) -> None:
    body = envelope(goal="x" * 500)
    status, _ = await call(pipeline, body=body, trace_io_max_chars=100)
    assert status == 200
    (span,) = exported.get_finished_spans()
    value = str(attrs(span)["input.value"])
    assert value.startswith('{"goal": "xxx')
    assert value.endswith("characters in all]")
    assert len(value) < 150
    assert attrs(span)["input.mime_type"] == "text/plain"


@pytest.mark.parametrize("size", [100, 200_000], ids=["encoded on the loop", "off the loop"])
async def test_the_input_is_recorded_the_same_for_small_and_large_bodies(
    exported: InMemorySpanExporter, pipeline: str, size: int
) -> None:
    """A large body's input is encoded in the worker thread that read it (app/invoke.py)."""
    status, _ = await call(pipeline, body=envelope(goal="é" * size), trace_io_max_chars=50)
    assert status == 200
    (span,) = exported.get_finished_spans()
    value = str(attrs(span)["input.value"])
    assert value.startswith('{"goal": "' + "é" * 40)
    assert value.endswith(f"[cut: {size + 12} characters in all]")


async def test_a_call_without_metadata_still_gets_a_span(
    exported: InMemorySpanExporter, pipeline: str
) -> None:
    status, _ = await call(pipeline, body={"input": {"goal": "x"}})
    assert status == 200
    (span,) = exported.get_finished_spans()
    assert "metadata" not in attrs(span)


@pytest.mark.parametrize("agent", [agents.traced, agents.sync_traced], ids=["async", "sync"])
async def test_agent_spans_nest_under_the_request_span_and_carry_the_run_ids(
    exported: InMemorySpanExporter, pipeline: str, agent: Any
) -> None:
    status, body = await call(pipeline, [("traceparent", VALID)], agent=agent)
    assert status == 200
    spans = exported.get_finished_spans()
    assert len(spans) == 3
    (root,) = [span for span in spans if attrs(span).get("openinference.span.kind") == "AGENT"]
    children = [span for span in spans if span is not root]
    for span in spans:
        assert hex_trace(span) == TRACE_ID
        assert json.loads(str(attrs(span)["metadata"])) == METADATA
    for child in children:
        assert parent_id(child) == hex_span(root)
    # ctx.trace_headers() inside a child span: a downstream service joins under that child.
    version, trace_id, span_id, flags = body["trace_headers"]["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id in {hex_span(child) for child in children}


async def test_the_agents_own_metadata_is_merged_with_the_run_ids(
    exported: InMemorySpanExporter,
    pipeline: str,
) -> None:
    async def agent(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        with agents.TRACER.start_as_current_span("mine", attributes={"metadata": '{"k": 1}'}):
            return "ok"

    await call(pipeline, agent=agent)
    mine = by_name(exported.get_finished_spans())["mine"]
    assert json.loads(str(attrs(mine)["metadata"])) == {**METADATA, "k": 1}


# -- failures


async def test_an_agent_error_marks_the_span_without_leaking_the_key(
    exported: InMemorySpanExporter,
    pipeline: str,
) -> None:
    status, body = await call(
        pipeline, body=envelope(message=f"bad key {KEY}"), agent=agents.failing
    )
    assert status == 500
    (span,) = exported.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert "RuntimeError" in span.status.description
    assert attrs(span)["error.type"] == "agent_error"
    assert attrs(span)["http.response.status_code"] == 500
    (event,) = span.events
    assert event.name == "exception"
    assert "[redacted]" in str(event.attributes)
    assert KEY not in json.dumps(span.to_json())
    assert KEY not in json.dumps(body)


async def test_a_rejected_input_marks_the_span(
    exported: InMemorySpanExporter, pipeline: str
) -> None:
    settings = make_settings(trace_pipeline=pipeline)  # the trip schema: goal required
    app = create_app(settings, agent=agents.echo, tracer_provider=PROVIDERS[pipeline])
    async with client_for(app) as client:
        response = await client.post("/invoke", json={"input": {"city": "Tokyo"}}, headers=AUTH)
    assert response.status_code == 422
    (span,) = exported.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == response.json()["error"]["type"]
    assert attrs(span)["http.response.status_code"] == 422


async def test_requests_refused_before_the_envelope_make_no_span(
    exported: InMemorySpanExporter,
    pipeline: str,
) -> None:
    settings = make_settings(trace_pipeline=pipeline)
    app = create_app(settings, agent=agents.echo, tracer_provider=PROVIDERS[pipeline])
    async with client_for(app) as client:
        unauthorised = await client.post("/invoke", json=envelope())
        malformed = await client.post("/invoke", content=b"{", headers=JSON_AUTH)
    assert (unauthorised.status_code, malformed.status_code) == (401, 400)
    assert exported.get_finished_spans() == ()


# -- an outer span: FastAPIInstrumentor (opt-in), with header capture switched on


async def test_with_fastapi_instrumentor_ours_is_a_child_and_keys_are_masked(
    exported: InMemorySpanExporter, pipeline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    settings = make_settings(**OPEN_SCHEMA, api_keys=[KEY, OLD_KEY], fastapi_instrumentor=True)
    app = create_app(settings, agent=agents.traced)
    async with client_for(app) as client:
        response = await client.post(
            "/invoke",
            json=envelope(),
            headers={**AUTH, "X-API-Key": OLD_KEY, "traceparent": VALID},
        )
    assert response.status_code == 200
    spans = exported.get_finished_spans()
    server = next(span for span in spans if span.kind is SpanKind.SERVER)
    ours = next(span for span in spans if attrs(span).get("openinference.span.kind") == "AGENT")
    assert parent_id(server) == PARENT_ID
    assert parent_id(ours) == hex_span(server)
    assert ours.kind is SpanKind.INTERNAL
    assert {hex_trace(span) for span in spans} == {TRACE_ID}
    # Capture was on: the headers are there, masked.
    for header in ("authorization", "x_api_key"):
        (masked,) = attrs(server)[f"http.request.header.{header}"]
        assert masked.lower() == "[redacted]"
    everything = json.dumps([json.loads(span.to_json()) for span in spans])
    assert KEY not in everything
    assert OLD_KEY not in everything


@pytest.mark.parametrize("project", [None, "", "proj ✓"])
@pytest.mark.parametrize("value", ["plain", 'quote " and \\ back', "naïve ✓ \u2028", "\x00\n"])
def test_the_run_ids_metadata_is_what_json_dumps_writes(value: str, project: str | None) -> None:
    ids = {
        "dataset_id": value,
        "experiment_id": "e",
        "run_id": value,
        "example_id": "x",
        "space_id": value,
    }
    metadata = ArizeMetadata.model_validate({**ids, "project_name": project})
    expected = {**ids, "project_name": project} if project else ids
    assert _run_ids(metadata) == json.dumps(expected)


def normalised(span: ReadableSpan) -> dict[str, Any]:
    """An exported span without what differs between any two runs: ids and times."""
    data: dict[str, Any] = json.loads(span.to_json())
    for key in ("context", "start_time", "end_time", "parent_id"):
        data.pop(key)
    for event in data["events"]:
        event.pop("timestamp")
        event["attributes"].pop("exception.stacktrace", None)
    return data


async def nested(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
    with agents.TRACER.start_as_current_span("step", attributes={"k": "v"}) as span:
        span.add_event("note", {"n": 1})
        return "done"


@pytest.mark.parametrize(
    ("agent", "headers"),
    [
        (nested, [("traceparent", VALID), ("tracestate", TRACESTATES[0])]),
        (agents.failing, []),
    ],
    ids=["nested", "failing"],
)
async def test_both_pipelines_export_the_same_spans(
    exported: InMemorySpanExporter, agent: Any, headers: list[tuple[str, str]]
) -> None:
    """The exported-span parity of the pipelines: the same request, the same spans."""
    seen = {}
    for pipeline in sorted(PROVIDERS):
        exported.clear()
        await call(pipeline, headers, agent=agent)
        seen[pipeline] = sorted(
            (normalised(span) for span in exported.get_finished_spans()), key=json.dumps
        )
    assert seen["fast"] == seen["sdk"]
    assert seen["sdk"]
