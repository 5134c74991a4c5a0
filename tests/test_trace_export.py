"""Spans leaving a real server process: Arize per-space routing, an unreachable collector, logs.

The server runs as `agent-endpoint serve` would, exporting with the real exporters to a local
OTLP/HTTP receiver that records which space each export request was addressed to.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AUTH, KEY, METADATA
from tests.live import free_port, live_server
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.servers import served

pytestmark = pytest.mark.live

ARIZE_KEY = "ak-arize-test-key-0123456789abcdef"
TIMEOUT = 20.0


def call(url: str, space: str | None, index: int, *, baggage: bool = False) -> httpx.Response:
    run_id = f"run-{space}-{index}"
    headers = {**AUTH, "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
    body: dict[str, Any] = {"input": {"goal": f"row {index}"}}
    if baggage:
        headers["baggage"] = f"arize.space_id={space},arize.project_name=proj-{space}"
    else:
        body["arize_metadata"] = {
            **METADATA,
            "run_id": run_id,
            "space_id": space,
            "project_name": f"proj-{space}",
        }
    return httpx.post(f"{url}/invoke", json=body, headers=headers, timeout=TIMEOUT)


def test_two_spaces_at_once_each_get_only_their_own_spans(tmp_path: Path, pipeline: str) -> None:
    receiver = OtlpReceiver()
    log = tmp_path / "server.log"
    calls = [(space, i, i % 2 == 1) for i in range(10) for space in ("a", "b", "x")]
    with (
        live_server(receiver.app) as collector,
        served(
            log,
            AGENT_ENTRYPOINT="tests.agents:traced",
            ARIZE_API_KEY=ARIZE_KEY,
            ARIZE_SPACE_ALLOWLIST="a,b",
            ARIZE_COLLECTOR_ENDPOINT=collector,
            AGENT_ARIZE_TRANSPORT="http",
            AGENT_TRACE_PIPELINE=pipeline,
            # The fast pipeline's export child yields the CPU by default (niceness 10); on a
            # machine busy with other work it may not flush before its stop timeout. This test
            # is about routing, not niceness: the child runs at the server's priority.
            AGENT_EXPORT_NICE="0",
        ) as url,
        ThreadPoolExecutor(max_workers=16) as pool,
    ):
        responses = list(pool.map(lambda c: call(url, c[0], c[1], baggage=c[2]), calls))
    # Leaving the block stopped the server, which flushed its batches.
    assert [response.status_code for response in responses] == [200] * len(calls)
    spans = receiver.spans()
    # Each request: the AGENT span, the agent's child span and its thread's span.
    assert Counter(span.headers["arize-space-id"] for span in spans) == {"a": 30, "b": 30}
    for span in spans:
        space = span.headers["arize-space-id"]
        assert span.attributes["arize.space_id"] == space
        assert span.attributes["arize.project.name"] == f"proj-{space}"
        assert span.headers["authorization"] == ARIZE_KEY  # Arize's collector auth
        if "metadata" in span.attributes:  # the rows sent with arize_metadata
            assert json.loads(span.attributes["metadata"])["space_id"] == space
        assert_no_secret(span)
    by_trace = Counter(span.trace_id for span in spans)
    assert set(by_trace.values()) == {3}  # children inherit the routing of their request
    output = log.read_text()
    assert output.count("Arize space 'x' is not in ARIZE_SPACE_ALLOWLIST") == 1
    assert ARIZE_KEY not in output
    assert KEY not in output


def assert_no_secret(span: ReceivedSpan) -> None:
    text = json.dumps([span.name, span.attributes, span.resource], default=str)
    assert ARIZE_KEY not in text
    assert KEY not in text


def test_an_unreachable_collector_costs_requests_nothing(tmp_path: Path, pipeline: str) -> None:
    log = tmp_path / "server.log"
    closed = free_port()
    with (
        served(
            log,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed}",
            OTEL_BSP_SCHEDULE_DELAY="50",
            OTEL_EXPORTER_OTLP_TIMEOUT="2",
            AGENT_TRACE_PIPELINE=pipeline,
        ) as url,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        responses = list(pool.map(lambda i: call(url, "a", i), range(40)))
    assert [response.status_code for response in responses] == [200] * 40
    assert "Application shutdown complete" in log.read_text()


def test_json_logs_carry_the_trace_and_run_ids(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    trace_id = secrets.token_hex(16)
    with served(log, AGENT_ENTRYPOINT="tests.agents:logging_agent", AGENT_LOG_FORMAT="json") as url:
        response = httpx.post(
            f"{url}/invoke",
            json={"input": {"goal": "Lisbon"}, "arize_metadata": METADATA},
            headers={**AUTH, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
            timeout=TIMEOUT,
        )
    assert response.status_code == 200
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (agent_line,) = [record for record in records if record["message"] == "planning Lisbon"]
    assert agent_line["trace_id"] == trace_id
    assert len(agent_line["span_id"]) == 16
    assert agent_line["run_id"] == METADATA["run_id"]
    assert agent_line["logger"] == "agent"
    assert {"time", "level"} <= set(agent_line)
    access = [record for record in records if record["logger"] == "uvicorn.access"]
    assert access, "uvicorn's access log goes through the same JSON handler"


def test_without_an_exporter_the_callers_trace_still_reaches_the_agent(
    tmp_path: Path, pipeline: str
) -> None:
    """Nothing is recorded, but ctx.trace_headers() still continues the caller's trace, and
    hands its tracestate on as it came."""
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{caller}-03"  # sampled, random trace id
    state = "rojo=00f067aa0ba902b7 ,  congo=t61rcWkgMzE"
    with served(
        tmp_path / "server.log",
        AGENT_ENTRYPOINT="tests.agents:traced",
        AGENT_TRACE_PIPELINE=pipeline,
    ) as url:
        response = httpx.post(
            f"{url}/invoke",
            json={"input": {"goal": "x"}},
            headers={**AUTH, "traceparent": traceparent, "tracestate": state},
            timeout=TIMEOUT,
        )
    assert response.status_code == 200
    handed_on = response.json()["trace_headers"]
    assert handed_on["traceparent"] == traceparent
    assert handed_on["tracestate"] == state
    assert "spans are not recorded" in (tmp_path / "server.log").read_text()
