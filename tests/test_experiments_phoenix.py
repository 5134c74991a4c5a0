"""`coordinator run --phoenix`: experiments recorded in a real Phoenix, read back over its REST API.

The endpoint runs as a child process exporting its spans to the same Phoenix under a project of
its own; the coordinator uploads the dataset, creates the experiment, records every run with its
trace id and every evaluation, and files each run's trace in the experiment's project.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.cli import main
from tests.conftest import KEY
from tests.live import free_port, live_server
from tests.phoenix import Phoenix
from tests.processes import ROOT, clean_env
from tests.servers import served

pytestmark = pytest.mark.live

SAMPLES = ROOT / "coordinator" / "samples"
DATASET = SAMPLES / "trips-graded.csv"
ROWS = 4
EVALS = (
    f"json_schema:{SAMPLES / 'answer-schema.json'}",
    "contains:city@final_response",
    "tests.custom_evaluators:broken",
    "judge",
)


def run(url: str, phoenix: Phoenix, results: Path, dataset_name: str, preset: str) -> int:
    return main(
        [
            "coordinator",
            "run",
            "--url",
            f"{url}/invoke",
            "--dataset",
            str(DATASET),
            "--template",
            str(SAMPLES / "template.json"),
            "--header",
            f"X-API-Key: {KEY}",
            "--preset",
            preset,
            "--results",
            str(results),
            "--phoenix",
            phoenix.base_url,
            "--dataset-name",
            dataset_name,
            "--judge-model",
            "tests.fake_judge:model",
            *(flag for spec in EVALS for flag in ("--eval", spec)),
        ]
    )


def get(phoenix: Phoenix, path: str, **params: Any) -> Any:
    response = phoenix.client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_run_is_an_experiment_with_its_runs_traces_and_evaluations(
    phoenix: Phoenix, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint_project = f"endpoint-{uuid.uuid4().hex[:8]}"
    dataset_name = f"trips-{uuid.uuid4().hex[:8]}"
    with served(
        tmp_path / "server.log",
        AGENT_INPUT_SCHEMA_FILE=str(ROOT / "agent" / "input_schema.json"),
        AGENT_TRACE_PROJECT=endpoint_project,
        OTEL_EXPORTER_OTLP_ENDPOINT=phoenix.base_url,
    ) as url:
        assert run(url, phoenix, tmp_path / "a.jsonl", dataset_name, "Cost optimized") == 0
        first = capsys.readouterr().out
        assert run(url, phoenix, tmp_path / "b.jsonl", dataset_name, "Opus comparison") == 0
        second = capsys.readouterr().out

    # The dataset: uploaded once, found again by name and content on the second run.
    (dataset,) = get(phoenix, "/v1/datasets", name=dataset_name)["data"]
    assert len(get(phoenix, f"/v1/datasets/{dataset['id']}/versions")["data"]) == 1
    examples = get(phoenix, f"/v1/datasets/{dataset['id']}/examples")["data"]["examples"]
    assert sorted(e["input"]["id"] for e in examples) == sorted(
        line.split(",")[0] for line in DATASET.read_text().splitlines()[1:]
    )
    experiments = get(phoenix, f"/v1/datasets/{dataset['id']}/experiments")["data"]
    assert len(experiments) == 2  # two presets: two experiments on one dataset, side by side
    by_preset = {e["metadata"]["preset"]: e for e in experiments}
    experiment = by_preset["Cost optimized"]
    assert experiment["metadata"]["shape"] == "flat"
    assert experiment["metadata"]["config"] == {"model": "claude-haiku-4-5", "max_turns": 8}
    assert experiment["metadata"]["evaluators"] == list(EVALS)
    assert f"datasets/{dataset['id']}/compare?experimentId={experiment['id']}" in first
    assert f"compare?experimentId={by_preset['Opus comparison']['id']}" in second
    assert (
        f"phoenix: experiment 'trips-graded · Cost optimized' on dataset '{dataset_name}': "
        "4 runs, 16 evaluations recorded"
    ) in first

    # Every run, with the trace id the results file has, and every evaluation.
    results = {
        line["example_id"]: line
        for line in map(json.loads, (tmp_path / "a.jsonl").read_text().splitlines())
    }
    runs = get(phoenix, f"/v1/experiments/{experiment['id']}/json")
    assert len(runs) == ROWS
    for recorded in runs:
        result = results[recorded["input"]["id"]]
        assert recorded["trace_id"] == result["trace_id"]
        assert recorded["output"] == result["response"]
        assert recorded["error"] is None
        annotations = {a["name"]: a for a in recorded["annotations"]}
        assert set(annotations) == set(EVALS)
        for name, verdict in result["evaluations"].items():
            assert annotations[name]["score"] == verdict.get("score")
            assert annotations[name]["label"] == verdict.get("label")
        broken = annotations["tests.custom_evaluators:broken"]
        assert broken["error"].startswith("RuntimeError: this evaluator always fails")
        assert annotations["judge"]["annotator_kind"] == "LLM"
        assert annotations["contains:city@final_response"]["annotator_kind"] == "CODE"

    # Each run's trace resolves, in the experiment's project, to the endpoint's request span
    # under the coordinator's run span, with the agent's plan and tool spans beneath.
    spans = phoenix.spans(experiment["project_name"], expected=ROWS * 4)
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        traces[span["context"]["trace_id"]].append(span)
    for example_id, result in results.items():
        trace = {span["name"]: span for span in traces[result["trace_id"]]}
        request, root = trace["agent:run"], trace["experiment_run"]
        assert request["span_kind"] == "AGENT"
        assert request["parent_id"] == root["context"]["span_id"]
        assert request["attributes"]["metadata.run_id"] == result["run_id"]
        assert request["attributes"]["metadata.experiment_id"] == experiment["id"]
        if example_id != "trip-unknown":
            assert trace["plan"]["span_kind"] == "CHAIN"
            assert trace["lookup_city"]["span_kind"] == "TOOL"
            assert trace["lookup_city"]["parent_id"] == request["context"]["span_id"]
            assert trace["lookup_city"]["attributes"]["metadata.run_id"] == result["run_id"]
    assert "phoenix: a trace: " in first


def test_an_unreachable_phoenix_stops_the_run_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "coordinator",
            "run",
            "--url",
            "http://127.0.0.1:9/invoke",
            "--dataset",
            str(DATASET),
            "--template",
            str(SAMPLES / "template.json"),
            "--results",
            str(tmp_path / "r.jsonl"),
            "--phoenix",
            f"http://127.0.0.1:{free_port()}",
        ]
    )
    assert code == 2
    assert "is it running there (`make phoenix`)?" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()


def test_without_the_phoenix_client_the_run_names_the_install_command(tmp_path: Path) -> None:
    """A venv without the extra, as `pip install agent-endpoint` makes it: the import fails."""
    script = (
        "import sys; sys.modules['phoenix.client'] = None\n"
        "from app.cli import main\n"
        f"sys.exit(main(['coordinator', 'run', '--url', 'http://127.0.0.1:9/invoke', "
        f"'--dataset', {str(DATASET)!r}, '--template', '{{\"goal\": \"x\"}}', "
        f"'--results', {str(tmp_path / 'r.jsonl')!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=clean_env(PHOENIX_COLLECTOR_ENDPOINT="http://127.0.0.1:9"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "needs arize-phoenix-client: install the coordinator's extra: " in done.stderr
    assert "pip install 'agent-endpoint[experiments]'" in done.stderr


PUSH_DELAY = 0.3
PUSHED_SCHEMA = 'json_schema:{"required": ["prediction_id", "prediction"]}'


def test_an_async_run_is_recorded_when_its_pushed_result_arrives(
    phoenix: Phoenix, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 202 run's output in Phoenix is the record its agent pushed to the log API, and its end
    is the push's arrival; a push that never comes is the run's error."""
    log_port = free_port()
    pending: list[asyncio.Task[None]] = []

    async def push(run_id: str) -> None:
        await asyncio.sleep(PUSH_DELAY)
        record = {
            "space_key": "space-1",
            "model_id": "trip-planner",
            "prediction_id": run_id,
            "prediction": {"label": {"numeric": 1.0}},
        }
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(
                f"http://127.0.0.1:{log_port}/v1/log",
                json=record,
                headers={"Authorization": "log-key-1"},
            )
            assert response.status_code == 200, response.text

    async def accept(request: Request) -> Response:
        body = await request.json()
        run_id = body["arize_metadata"]["run_id"]
        if "Paris" not in body["goal"]:  # the Paris job never reports back
            pending.append(asyncio.create_task(push(run_id)))
        return JSONResponse({"job_id": f"j-{run_id}"}, status_code=202)

    dataset_name = f"async-{uuid.uuid4().hex[:8]}"
    with live_server(Starlette(routes=[Route("/invoke", accept, methods=["POST"])])) as base:
        code = main(
            [
                "coordinator",
                "run",
                "--url",
                f"{base}/invoke",
                "--dataset",
                str(DATASET),
                "--template",
                str(SAMPLES / "template.json"),
                "--results",
                str(tmp_path / "r.jsonl"),
                "--log-api-port",
                str(log_port),
                "--log-api-key",
                "log-key-1",
                "--space-key",
                "space-1",
                "--push-wait",
                "2",
                "--phoenix",
                phoenix.base_url,
                "--dataset-name",
                dataset_name,
                "--eval",
                PUSHED_SCHEMA,
            ]
        )
    assert code == 1  # the lost push
    assert "4 runs, 3 evaluations recorded" in capsys.readouterr().out
    (dataset,) = get(phoenix, "/v1/datasets", name=dataset_name)["data"]
    (experiment,) = get(phoenix, f"/v1/datasets/{dataset['id']}/experiments")["data"]
    runs = {r["input"]["id"]: r for r in get(phoenix, f"/v1/experiments/{experiment['id']}/json")}
    results = {
        line["example_id"]: line
        for line in map(json.loads, (tmp_path / "r.jsonl").read_text().splitlines())
    }
    tokyo = runs["trip-tokyo"]
    assert tokyo["output"]["prediction_id"] == results["trip-tokyo"]["run_id"]
    assert tokyo["trace_id"] == results["trip-tokyo"]["trace_id"]
    assert tokyo["output"]["prediction"] == {"label": {"numeric": 1.0}}
    took = datetime.fromisoformat(tokyo["end_time"]) - datetime.fromisoformat(tokyo["start_time"])
    assert took.total_seconds() >= PUSH_DELAY
    (verdict,) = tokyo["annotations"]
    assert verdict["name"] == PUSHED_SCHEMA
    assert verdict["label"] == "pass"  # evaluated on the pushed record, not on the 202's body
    assert runs["trip-paris"]["error"].startswith("push_timeout: job accepted, but no record")
    assert runs["trip-paris"]["annotations"] == []
