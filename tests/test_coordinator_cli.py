"""`agent-endpoint coordinator run` end to end against a live server with the example agent.

The runs against the real app in the flat shape (the default, the Agent Playground's) need the
app to accept top-level fields beside `arize_metadata` (issue 13).
"""

from __future__ import annotations

import asyncio
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
from coordinator.schema import with_preset
from coordinator.template import Shape
from tests.conftest import KEY, make_settings
from tests.live import free_port, live_server
from tests.processes import ROOT

SAMPLES = ROOT / "coordinator" / "samples"
SAMPLE_TEMPLATES: dict[Shape, Path] = {
    "flat": SAMPLES / "template.json",
    "wrapped": SAMPLES / "template-wrapped.json",
}
GOALS: dict[Shape, str] = {
    "flat": '{"goal": "{{dataset.question}}"}',
    "wrapped": '{"goal": "{{question}}"}',
}
SHAPES: list[Shape] = ["flat", "wrapped"]


def shape_flags(shape: Shape) -> list[str]:
    """No flag for flat: the default is what these tests check."""
    return [] if shape == "flat" else ["--shape", shape]


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


def run_recorded(
    results: Path, pick: Pick, template: str, *extra: str, started: list[float] | None = None
) -> tuple[int, list[Any]]:
    """Run the sample dataset against a live app whose agent records `pick(input, ctx)`;
    `started` gets the monotonic time just before the coordinator starts."""
    seen: list[Any] = []

    async def record(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        seen.append(pick(input, ctx))
        return "ok"

    with live_server(create_app(make_settings(), agent=record)) as base:
        if started is not None:
            started.append(time.monotonic())
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


@pytest.mark.parametrize("shape", SHAPES)
def test_sample_dataset_runs_green(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: Shape
) -> None:
    results = tmp_path / "out" / "results.jsonl"
    code = coordinator(
        url,
        results,
        "--template",
        str(SAMPLE_TEMPLATES[shape]),
        "--header",
        f"Authorization: Bearer {KEY}",
        *shape_flags(shape),
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
    assert all(line["shape"] == shape for line in lines)
    tokyo = next(line for line in lines if line["example_id"] == "trip-tokyo")
    assert tokyo["response"]["final_response"].startswith("3-day plan for Tokyo")
    assert "runs 4: ok 4, failed 0 (timed out 0)" in out
    assert "latency: p50" in out
    assert KEY not in out + err + results.read_text()


@pytest.mark.parametrize(
    ("shape", "written", "fix"),
    [
        ("flat", "{{question}}", "write {{dataset.question}}, the Agent Playground's style"),
        ("wrapped", "{{dataset.question}}", "write {{question}}, the setup page's style"),
    ],
)
def test_the_other_shapes_placeholder_stops_before_sending(
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    shape: Shape,
    written: str,
    fix: str,
) -> None:
    """Arize would send it unfilled; the message names the style of the chosen shape."""
    results = tmp_path / "results.jsonl"
    template = json.dumps({"goal": written})
    code = coordinator(url, results, "--template", template, *shape_flags(shape))
    err = capsys.readouterr().err
    assert code == 2
    assert fix in err
    assert "columns are: id, question, days" in err
    assert not results.exists()


def test_unknown_column_stops_before_sending(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.jsonl"
    code = coordinator(url, results, "--template", '{"goal": "{{dataset.prompt}}"}')
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "{{dataset.prompt}} names no column. The dataset's columns are: id, question, days" in err
    )
    assert not results.exists()


def test_failed_runs_set_the_exit_status(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = GOALS["flat"]
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


@pytest.mark.parametrize(
    ("shape", "violation"),
    [
        ("flat", 'body: "goal" is a required property'),
        ("wrapped", 'input: "goal" is a required property'),
    ],
)
def test_schema_auto_refuses_bad_bodies_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: Shape, violation: str
) -> None:
    """Each violation is named by its place in the body as sent in that shape."""
    results = tmp_path / "r.jsonl"
    template = GOALS[shape].replace("goal", "question")
    code, seen = run_recorded(
        results, lambda body, _: body, template, "--schema", "auto", *shape_flags(shape)
    )
    assert code == 1
    assert seen == []
    first = json.loads(results.read_text().splitlines()[0])
    assert first["error"]["kind"] == "schema"
    assert violation in first["error"]["violations"]
    assert "schema: 4" in capsys.readouterr().out


@pytest.mark.parametrize("shape", SHAPES)
def test_preset_from_get_schema_fills_config(tmp_path: Path, shape: Shape) -> None:
    """The app's presets are config payloads: both shapes give the agent the same config, and
    the goal placeholder is left to the row."""
    code, seen = run_recorded(
        tmp_path / "r.jsonl",
        lambda input, ctx: (input["goal"], ctx.config),  # noqa: A006
        SAMPLE_TEMPLATES[shape].read_text(),  # sets its own config: the preset replaces it
        "--schema",
        "auto",
        "--preset",
        "Cost optimized",
        *shape_flags(shape),
    )
    assert code == 0
    assert sorted(seen)[0] == (
        "Plan a 2-day trip to Paris",
        {"model": "claude-haiku-4-5", "max_turns": 8},
    )
    assert [config for _, config in seen] == [{"model": "claude-haiku-4-5", "max_turns": 8}] * 4


PRESET_DOCUMENT: dict[str, Any] = {
    "input_schema": {
        "type": "object",
        "properties": {"goal": {"type": "string"}, "config": {"type": "object"}},
    },
    "presets": {
        "Cost optimized": {"model": "claude-haiku-4-5", "max_turns": 8},  # a config payload
        "Opus fields": {"config": {"model": "claude-opus-4-7"}},  # top-level fields
    },
}


@pytest.mark.parametrize(
    ("shape", "preset", "config"),
    [
        ("flat", "Cost optimized", {"model": "claude-haiku-4-5", "max_turns": 8}),
        ("flat", "Opus fields", {"model": "claude-opus-4-7"}),
        ("wrapped", "Cost optimized", {"model": "claude-haiku-4-5", "max_turns": 8}),
    ],
)
def test_preset_in_the_body_as_sent(
    tmp_path: Path, shape: Shape, preset: str, config: dict[str, Any]
) -> None:
    """What reaches the endpoint: the Agent Playground merges the preset's fields at the top
    level (replacing config, keeping the goal placeholder); the setup page puts it in config."""
    bodies: list[dict[str, Any]] = []

    async def capture(request: Request) -> Response:
        bodies.append(await request.json())
        return JSONResponse({"ok": True})

    document = tmp_path / "schema.json"
    document.write_text(json.dumps(PRESET_DOCUMENT))
    template = json.loads(SAMPLE_TEMPLATES[shape].read_text())
    with live_server(Starlette(routes=[Route("/invoke", capture, methods=["POST"])])) as base:
        code = coordinator(
            base + "/invoke",
            tmp_path / "r.jsonl",
            "--template",
            json.dumps(template),
            "--schema",
            str(document),
            "--preset",
            preset,
            *shape_flags(shape),
        )
    assert code == 0
    assert len(bodies) == 4
    paris = next(b for b in bodies if b["arize_metadata"]["example_id"] == "trip-paris")
    fields = paris if shape == "flat" else paris["input"]
    assert fields["goal"] == "Plan a 2-day trip to Paris"
    assert fields["config"] == config
    expected_keys = (
        {"goal", "config", "arize_metadata"} if shape == "flat" else {"input", "arize_metadata"}
    )
    assert set(paris) == expected_keys


def test_a_fields_preset_in_the_wrapped_shape_stays_a_config_payload() -> None:
    """Wrapped keeps today's rule whatever the preset holds: the payload is `config`."""
    template = {"goal": "{{question}}"}
    assert with_preset(template, PRESET_DOCUMENT, "Opus fields", "wrapped") == {
        "goal": "{{question}}",
        "config": {"config": {"model": "claude-opus-4-7"}},
    }


def test_unknown_preset_lists_the_presets(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = coordinator(url, tmp_path / "r.jsonl", "--template", GOALS["flat"], "--preset", "Fast")
    assert code == 2
    assert "no preset 'Fast'; presets: Production baseline, Opus comparison, Cost optimized" in (
        capsys.readouterr().err
    )


def test_rate_limit_spaces_requests(tmp_path: Path) -> None:
    """At 10 per second the k-th request is sent no earlier than k/10 s after the start. Load
    can only delay arrivals, so this lower bound holds on a busy machine too; without pacing
    all four would arrive at once."""
    started: list[float] = []
    code, arrivals = run_recorded(
        tmp_path / "r.jsonl",
        lambda _, __: time.monotonic(),
        GOALS["wrapped"],
        "--shape",
        "wrapped",
        "--rate",
        "10",
        "--concurrency",
        "4",
        started=started,
    )
    assert code == 0
    assert len(arrivals) == 4
    for index, arrival in enumerate(sorted(arrivals)):
        assert arrival - started[0] >= index * 0.1 - 0.005  # clock granularity


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
        run_id, question = body["arize_metadata"]["run_id"], body["goal"]  # the flat shape
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
            GOALS["flat"],
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
    code = coordinator(closed, results, "--template", GOALS["flat"], "--dry-run")
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
        'shape = "wrapped"\n'
        "[template]\n"
        'goal = "{{question}}"\n'
        "[headers]\n"
        f'Authorization = "Bearer {KEY}"\n'
    )
    flag_results = tmp_path / "from-flag.jsonl"
    code = main(["coordinator", "run", "--config", str(config), "--results", str(flag_results)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    lines = [json.loads(line) for line in flag_results.read_text().splitlines()]
    assert [line["status"] for line in lines] == [200] * 4
    assert {line["shape"] for line in lines} == {"wrapped"}
    assert not (tmp_path / "from-config.jsonl").exists()
    assert KEY not in out + err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"url": "http://127.0.0.1:1/invoke", "colour": "blue"}', "unknown options colour"),
        ('{"template": {"goal": "x"}}', "missing --url, --dataset (as flags or in --config)"),
        ("{not json", "--config"),
        (
            '{"url": "http://127.0.0.1:1/invoke", "dataset": "d.csv", "template": {}, '
            '"shape": "nested"}',
            "shape must be one of flat, wrapped",
        ),
    ],
    ids=["unknown option", "missing required", "unreadable", "unknown shape"],
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
