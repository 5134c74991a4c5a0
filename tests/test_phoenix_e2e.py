"""End to end with a real receiver: the service exports to Phoenix, spans are read back.

The server runs as a child process (`agent-endpoint serve`) with the LangGraph example agent,
exporting over OTLP/HTTP or OTLP/gRPC, on either tracing pipeline (AGENT_TRACE_PIPELINE);
Phoenix's REST API gives the spans back.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.cli import main
from tests.conftest import AUTH, KEY, METADATA
from tests.phoenix import Phoenix
from tests.processes import ROOT
from tests.servers import served

pytestmark = pytest.mark.live

ROWS = 3
SPANS_PER_ROW = 10  # AGENT, and the graph's CHAIN, LLM and TOOL spans (examples/langgraph_agent)


def transport_env(phoenix: Phoenix, transport: str) -> dict[str, str]:
    if transport == "grpc":
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.otlp_grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        }
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.base_url}


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_framework_spans_land_in_the_callers_trace_with_the_run_ids(
    phoenix: Phoenix, tmp_path: Path, transport: str, pipeline: str
) -> None:
    project = f"e2e-{transport}-{pipeline}-{uuid.uuid4().hex[:8]}"
    sent: dict[str, tuple[str, str]] = {}  # trace id -> (caller span id, run id)
    with served(
        tmp_path / "server.log",
        AGENT_ENTRYPOINT="examples.langgraph_agent:run",
        AGENT_INPUT_SCHEMA_FILE=str(ROOT / "agent" / "input_schema.json"),
        AGENT_TRACE_PROJECT=project,
        AGENT_TRACE_PIPELINE=pipeline,
        # The fast pipeline's export process runs niced by default; on a machine whose cores are
        # saturated a niced child barely starts within the wait. Priority is not under test here.
        AGENT_EXPORT_NICE="0",
        **transport_env(phoenix, transport),
    ) as url:
        for row in range(ROWS):
            trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
            run_id = f"run-{row}"
            response = httpx.post(
                f"{url}/invoke",
                json={
                    "input": {"goal": "What's the weather in Lisbon?"},
                    "arize_metadata": {**METADATA, "run_id": run_id, "project_name": project},
                },
                headers={**AUTH, "traceparent": f"00-{trace_id}-{caller}-01"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            sent[trace_id] = (caller, run_id)
    spans = phoenix.spans(project, expected=ROWS * SPANS_PER_ROW)
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        traces[span["context"]["trace_id"]].append(span)
    assert set(traces) == set(sent)  # the caller's trace ids, no new trace
    for trace_id, trace in traces.items():
        caller, run_id = sent[trace_id]
        (root,) = [span for span in trace if span["span_kind"] == "AGENT"]
        assert root["parent_id"] == caller
        assert root["context"]["span_id"] != caller
        kinds = sorted(span["span_kind"] for span in trace)
        assert kinds.count("LLM") == 2
        assert kinds.count("TOOL") == 1
        ids = {span["context"]["span_id"] for span in trace}
        for span in trace:
            attributes = span["attributes"]
            assert attributes["metadata.run_id"] == run_id
            assert attributes["metadata.experiment_id"] == METADATA["experiment_id"]
            assert attributes["metadata.dataset_id"] == METADATA["dataset_id"]
            assert attributes["metadata.example_id"] == METADATA["example_id"]
            assert attributes["metadata.space_id"] == METADATA["space_id"]
            assert attributes["metadata.project_name"] == project
            if span is not root:
                assert span["parent_id"] in ids  # nested inside the request, not a new root


def test_the_coordinators_run_spans_are_the_parents_of_the_request_spans(
    phoenix: Phoenix, tmp_path: Path
) -> None:
    project = f"e2e-coordinator-{uuid.uuid4().hex[:8]}"
    with served(
        tmp_path / "server.log",
        AGENT_INPUT_SCHEMA_FILE=str(ROOT / "agent" / "input_schema.json"),
        AGENT_TRACE_PROJECT=project,
        OTEL_EXPORTER_OTLP_ENDPOINT=phoenix.base_url,
    ) as url:
        code = main(
            [
                "coordinator",
                "run",
                "--url",
                f"{url}/invoke",
                "--dataset",
                str(ROOT / "coordinator" / "samples" / "trips.csv"),
                "--template",
                str(ROOT / "coordinator" / "samples" / "template.json"),
                "--header",
                f"X-API-Key: {KEY}",
                "--results",
                str(tmp_path / "results.jsonl"),
                "--otlp-endpoint",
                phoenix.otlp_http_endpoint,
                "--project",
                project,
            ]
        )
    assert code == 0
    rows = len((ROOT / "coordinator" / "samples" / "trips.csv").read_text().splitlines()) - 1
    # Each row's trace also holds the coordinator's send span and the agent's own steps, from
    # two processes with their own export schedules: wait for every request span, not a count.
    deadline = time.monotonic() + 60
    while True:
        spans = phoenix.spans(project, expected=2 * rows)
        agents = [span for span in spans if span["span_kind"] == "AGENT"]
        if len(agents) >= rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    runs = {span["context"]["span_id"]: span for span in spans if span["parent_id"] is None}
    assert len(runs) == len(agents) == rows
    for agent in agents:
        run = runs[agent["parent_id"]]
        assert run["context"]["trace_id"] == agent["context"]["trace_id"]
        assert agent["attributes"]["metadata.run_id"] == run["attributes"]["metadata.run_id"]
