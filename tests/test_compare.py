"""`coordinator compare A.jsonl B.jsonl`: the terminal's comparison view, and its CI gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main

PASS = {"score": 1.0, "label": "pass"}
FAIL = {"score": 0.0, "label": "fail"}
BROKEN = {"error": "RuntimeError: boom"}


def line(
    example: str,
    index: int,
    evaluations: dict[str, Any] | None,
    *,
    ok: bool = True,
    latency: float = 10.0,
) -> dict[str, Any]:
    """A results.jsonl line as `coordinator run` writes it (the fields compare reads)."""
    return {
        "index": index,
        "example_id": example,
        "run_id": f"run_{example}",
        "trace_id": "0" * 32,
        "request": {"goal": example},
        "status": 200 if ok else 500,
        "latency_ms": latency,
        "attempts": 1,
        "response": {"final_response": example} if ok else None,
        "error": None if ok else {"kind": "http", "status": 500, "body": "boom"},
        "pushed": None,
        "shape": "flat",
        "started_at": "2026-01-01T00:00:00+00:00",
        "ended_at": "2026-01-01T00:00:01+00:00",
        "evaluations": evaluations if ok else None,
    }


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in lines))
    return path


def compare(tmp_path: Path, a: list[dict[str, Any]], b: list[dict[str, Any]], *flags: str) -> int:
    return main(
        [
            "coordinator",
            "compare",
            str(write(tmp_path / "a.jsonl", a)),
            str(write(tmp_path / "b.jsonl", b)),
            *flags,
        ]
    )


# (the row's run and verdicts in A, the same in B, the change compare prints)
CHANGES = [
    ({"exact": PASS}, {"exact": FAIL}, "row: exact pass → fail"),
    ({"exact": FAIL}, {"exact": PASS}, "row: exact fail → pass"),
    ({"exact": PASS}, {"exact": BROKEN}, "row: exact pass → error"),
    ({"exact": PASS}, {}, "row: exact pass → missing"),
    ({"exact": PASS}, None, "row: (run) pass → run failed; exact pass → run failed"),
    (None, {"exact": FAIL}, "row: (run) run failed → pass; exact run failed → fail"),
    (
        {"exact": PASS, "fast": FAIL},
        {"exact": FAIL, "fast": PASS},
        "row: exact pass → fail; fast fail → pass",
    ),
]


@pytest.mark.parametrize(("in_a", "in_b", "printed"), CHANGES)
def test_a_changed_verdict_is_listed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    in_a: dict[str, Any] | None,
    in_b: dict[str, Any] | None,
    printed: str,
) -> None:
    same = line("steady", 1, {"exact": PASS, "fast": PASS})
    a = [line("row", 0, in_a, ok=in_a is not None), same]
    b = [line("row", 0, in_b, ok=in_b is not None), same]
    assert compare(tmp_path, a, b) == 0  # informational without --fail-if-worse
    out = capsys.readouterr().out
    assert "verdict changes: 1 rows (worst first)" in out
    assert f"  {printed}\n" in out
    assert "steady" not in out


def test_unchanged_runs_have_no_changes_and_pass_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [line(f"r{i}", i, {"exact": PASS if i % 2 else FAIL}) for i in range(4)]
    assert compare(tmp_path, rows, rows, "--fail-if-worse") == 0
    out = capsys.readouterr().out
    assert "verdict changes: none" in out
    assert "exact pass" in out
    assert "50%" in out
    assert "B is worse" not in out


def test_the_summary_lines_and_the_worst_first_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = [
        line("better", 0, {"exact": FAIL}, latency=10),
        line("worse", 1, {"exact": PASS}, latency=20),
        line("failing", 2, {"exact": PASS}, latency=30),
    ]
    b = [
        line("better", 0, {"exact": PASS}, latency=40),
        line("worse", 1, {"exact": FAIL}, latency=50),
        line("failing", 2, None, ok=False, latency=60),
    ]
    assert compare(tmp_path, a, b, "--fail-if-worse") == 1
    out = capsys.readouterr().out
    listed = [row.split(":")[0].strip() for row in out.split("(worst first)\n")[1].splitlines()]
    assert listed[:3] == ["failing", "worse", "better"]
    table = {row.split("  ")[0]: row.split()[-3:] for row in out.splitlines() if "  " in row}
    assert table["runs ok"][-2:] == ["3/3", "2/3"]
    assert table["failed runs"] == ["0", "1", "+1"]
    assert table["exact mean"] == ["0.67", "0.50", "-0.17"]
    assert out.count("latency p50 ms") == 1
    assert "B is worse: failed runs 0 → 1; exact pass rate 67% → 50%" in out


@pytest.mark.parametrize(("tolerance", "code"), [("0", 1), ("24", 1), ("25", 0)])
def test_the_gate_allows_a_tolerance(tmp_path: Path, tolerance: str, code: int) -> None:
    a = [line(f"r{i}", i, {"exact": PASS}) for i in range(4)]
    b = [*a[:3], line("r3", 3, {"exact": FAIL})]
    assert compare(tmp_path, a, b, "--fail-if-worse", "--tolerance", tolerance) == code


def test_an_unreadable_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"index": 0}\nnot json\n')
    assert main(["coordinator", "compare", str(bad), str(bad)]) == 2
    assert "bad.jsonl:1: not a line of a results file" in capsys.readouterr().err
    assert main(["coordinator", "compare", str(tmp_path / "none.jsonl"), str(bad)]) == 2
    assert "none.jsonl: No such file or directory" in capsys.readouterr().err
