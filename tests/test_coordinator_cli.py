"""`agent-endpoint coordinator run` end to end against a live server with the example agent."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.cli import main
from app.context import AgentContext
from app.main import create_app
from tests.conftest import KEY, make_settings
from tests.live import free_port, live_server
from tests.processes import ROOT

SAMPLES = ROOT / "coordinator" / "samples"


@pytest.fixture
def url() -> Iterator[str]:
    with live_server(create_app(make_settings())) as base:
        yield base + "/invoke"


def coordinator(url: str, results: Path, *extra: str) -> int:
    return main(
        [
            "coordinator",
            "run",
            "--url",
            url,
            "--dataset",
            str(SAMPLES / "trips.csv"),
            "--results",
            str(results),
            *extra,
        ]
    )


Pick = Callable[[dict[str, Any], AgentContext], Any]


def run_recorded(results: Path, pick: Pick, template: str, *extra: str) -> tuple[int, list[Any]]:
    """Run the sample dataset against a live app whose agent records `pick(input, ctx)`."""
    seen: list[Any] = []

    async def record(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        seen.append(pick(input, ctx))
        return "ok"

    with live_server(create_app(make_settings(), agent=record)) as base:
        code = coordinator(
            base + "/invoke",
            results,
            "--template",
            template,
            "--header",
            f"X-API-Key: {KEY}",
            *extra,
        )
    return code, seen


def test_sample_dataset_runs_green(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "out" / "results.jsonl"
    code = coordinator(
        url,
        results,
        "--template",
        str(SAMPLES / "template.json"),
        "--header",
        f"Authorization: Bearer {KEY}",
    )
    out, err = capsys.readouterr()
    assert code == 0, out + err
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(line["example_id"] for line in lines) == [
        "trip-lisbon",
        "trip-paris",
        "trip-tokyo",
        "trip-unknown",
    ]
    assert all(line["status"] == 200 for line in lines)
    tokyo = next(line for line in lines if line["example_id"] == "trip-tokyo")
    assert tokyo["response"]["final_response"].startswith("3-day plan for Tokyo")
    assert "runs 4: ok 4, failed 0 (timed out 0)" in out
    assert "latency: p50" in out
    assert KEY not in out + err + results.read_text()


def test_unknown_column_stops_before_sending(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.jsonl"
    code = coordinator(url, results, "--template", '{"goal": "{{dataset.question}}"}')
    err = capsys.readouterr().err
    assert code == 2
    assert "write {{question}}" in err
    assert "columns are: id, question, days" in err
    assert not results.exists()


def test_failed_runs_set_the_exit_status(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = '{"goal": "{{question}}"}'
    results = tmp_path / "r.jsonl"
    assert coordinator(url, results, "--template", template) == 1  # no credentials: 401s
    out = capsys.readouterr().out
    assert "http 401 unauthorized: 4" in out
    assert coordinator(url, results, "--template", template, "--allow-failures") == 0


def test_bad_header_flag_is_a_usage_error(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = coordinator(
        url, tmp_path / "r.jsonl", "--template", "{}", "--header", "Bearer-without-colon"
    )
    assert code == 2
    assert "--header must look like 'Name: value'" in capsys.readouterr().err


def test_schema_auto_refuses_bad_bodies_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "r.jsonl"
    code, seen = run_recorded(
        results, lambda body, _: body, '{"question": "{{question}}"}', "--schema", "auto"
    )
    assert code == 1
    assert seen == []
    first = json.loads(results.read_text().splitlines()[0])
    assert first["error"]["kind"] == "schema"
    assert "input: 'goal' is a required property" in first["error"]["violations"]
    assert "schema: 4" in capsys.readouterr().out


def test_preset_fills_config(tmp_path: Path) -> None:
    code, configs = run_recorded(
        tmp_path / "r.jsonl",
        lambda _, ctx: ctx.config,
        '{"goal": "{{question}}"}',
        "--schema",
        "auto",
        "--preset",
        "Cost optimized",
    )
    assert code == 0
    assert configs == [{"model": "claude-haiku-4-5", "max_turns": 8}] * 4


def test_unknown_preset_lists_the_presets(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = coordinator(
        url, tmp_path / "r.jsonl", "--template", '{"goal": "{{question}}"}', "--preset", "Fast"
    )
    assert code == 2
    assert "no preset 'Fast'; presets: Production baseline, Opus comparison, Cost optimized" in (
        capsys.readouterr().err
    )


def test_rate_limit_spaces_requests(tmp_path: Path) -> None:
    code, arrivals = run_recorded(
        tmp_path / "r.jsonl",
        lambda _, __: time.monotonic(),
        '{"goal": "{{question}}"}',
        "--rate",
        "10",
        "--concurrency",
        "4",
    )
    assert code == 0
    gaps = [b - a for a, b in itertools.pairwise(sorted(arrivals))]
    assert len(gaps) == 3
    assert min(gaps) > 0.08  # 10 per second: 0.1 s apart, whatever the concurrency


def test_pushed_results_of_202_runs_are_matched(tmp_path: Path) -> None:
    """An async-style endpoint answers 202, then pushes its result to the log API stand-in."""
    log_port = free_port()
    pending: list[asyncio.Task[None]] = []

    async def push(run_id: str, question: str) -> None:
        await asyncio.sleep(0.2)
        record = {
            "space_key": "space-1",
            "model_id": "trip-planner",
            "prediction_id": run_id,
            "prediction": {
                "label": {"numeric": 1.0},
                "features": {"question": {"string": question}},
            },
        }
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"http://127.0.0.1:{log_port}/v1/log",
                json=record,
                headers={"Authorization": "log-key-1"},
            )
            assert response.status_code == 200, response.text

    async def accept(request: Request) -> Response:
        body = await request.json()
        run_id, question = body["arize_metadata"]["run_id"], body["input"]["goal"]
        if "Paris" in question:  # this job never reports back
            return JSONResponse({"job_id": "j-lost"}, status_code=202)
        if "Lisbon" in question:  # answered synchronously
            return JSONResponse({"final_response": "Lisbon plan"})
        pending.append(asyncio.create_task(push(run_id, question)))
        return JSONResponse({"job_id": f"j-{run_id}", "run_id": run_id}, status_code=202)

    results = tmp_path / "r.jsonl"
    app = Starlette(routes=[Route("/invoke", accept, methods=["POST"])])
    with live_server(app) as base:
        code = coordinator(
            base + "/invoke",
            results,
            "--template",
            '{"goal": "{{question}}"}',
            "--log-api-port",
            str(log_port),
            "--log-api-key",
            "log-key-1",
            "--space-key",
            "space-1",
            "--push-wait",
            "1",
        )
    lines = {line["example_id"]: line for line in map(json.loads, results.read_text().splitlines())}
    assert code == 1  # the lost job fails the experiment
    tokyo = lines["trip-tokyo"]
    assert tokyo["status"] == 202
    assert tokyo["response"]["job_id"] == f"j-{tokyo['run_id']}"
    assert tokyo["pushed"]["prediction_id"] == tokyo["run_id"]
    question = tokyo["pushed"]["prediction"]["features"]["question"]
    assert question == {"string": "Plan a 3-day trip to Tokyo"}
    assert tokyo["error"] is None
    assert lines["trip-lisbon"]["pushed"] is None
    assert lines["trip-lisbon"]["error"] is None
    assert lines["trip-paris"]["error"]["kind"] == "push_timeout"


def test_dry_run_sends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}/invoke"  # nothing listens: a send would fail
    results = tmp_path / "r.jsonl"
    code = coordinator(closed, results, "--template", '{"goal": "{{question}}"}', "--dry-run")
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert code == 0
    assert [line["attempts"] for line in lines] == [0, 0, 0, 0]
    assert {line["request"]["goal"] for line in lines} >= {"Plan a 3-day trip to Tokyo"}
    assert "runs 4: ok 4, failed 0" in capsys.readouterr().out


def test_config_file_with_headers_and_flags_winning(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "experiment.toml"
    config.write_text(
        f'url = "{url}"\n'
        f'dataset = "{SAMPLES / "trips.csv"}"\n'
        f'results = "{tmp_path / "from-config.jsonl"}"\n'
        "concurrency = 2\n"
        "[template]\n"
        'goal = "{{question}}"\n'
        "[headers]\n"
        f'Authorization = "Bearer {KEY}"\n'
    )
    flag_results = tmp_path / "from-flag.jsonl"
    code = main(["coordinator", "run", "--config", str(config), "--results", str(flag_results)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert len(flag_results.read_text().splitlines()) == 4
    assert not (tmp_path / "from-config.jsonl").exists()
    assert KEY not in out + err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"url": "http://127.0.0.1:1/invoke", "colour": "blue"}', "unknown options colour"),
        ('{"template": {"goal": "x"}}', "missing --url, --dataset (as flags or in --config)"),
        ("{not json", "--config"),
    ],
    ids=["unknown option", "missing required", "unreadable"],
)
def test_bad_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    config = tmp_path / "experiment.json"
    config.write_text(content)
    assert main(["coordinator", "run", "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_template_that_is_neither_file_nor_json(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = coordinator(url, tmp_path / "r.jsonl", "--template", "{goal: {{question}}}")
    assert code == 2
    assert "--template is neither a file nor JSON (line 1, column 2)" in capsys.readouterr().err
