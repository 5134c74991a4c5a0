"""`agent-endpoint coordinator run` end to end against a live server with the example agent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.main import create_app
from tests.conftest import KEY, make_settings
from tests.live import live_server
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
