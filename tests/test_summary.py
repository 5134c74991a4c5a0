"""The end-of-run summary folds results one at a time."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.runner import RunResult
from coordinator.summary import Summary


def result(index: int, latency: float | None, **fields: Any) -> RunResult:
    return RunResult(
        index=index,
        example_id=f"ex_{index}",
        run_id=f"r{index}",
        trace_id="t" * 32,
        request={},
        latency_ms=latency,
        **fields,
    )


def test_counts_percentiles_slowest_and_error_kinds() -> None:
    summary = Summary()
    for index in range(100):
        summary.add(result(index, float(index + 1), status=200))
    summary.add(result(100, 5000.0, error={"kind": "timeout"}))
    summary.add(result(101, 3.0, status=503, error={"kind": "http", "status": 503}))
    busy = {"error": {"type": "too_many_requests", "message": "m", "run_id": None}}
    summary.add(result(103, 4.0, status=429, error={"kind": "http", "status": 429, "body": busy}))
    summary.add(result(102, None, error={"kind": "template", "message": "x"}))
    assert (summary.total, summary.ok, summary.failed, summary.timed_out) == (104, 100, 4, 1)
    # 103 latencies: 1..100, 3, 4 and 5000; the 52nd smallest is 50 ms (within 1 %).
    assert summary.percentile(0.5) == pytest.approx(50.0, rel=0.01)
    assert summary.percentile(1.0) == pytest.approx(5000.0, rel=0.01)
    text = summary.render()
    assert "runs 104: ok 100, failed 4 (timed out 1)" in text
    assert "row 100 (ex_100): 5000.0 ms" in text.splitlines()[3]
    assert len([line for line in text.splitlines() if line.startswith("  row ")]) == 5
    assert "  timeout: 1" in text
    assert "  http 503: 1" in text
    assert "  http 429 too_many_requests: 1" in text
    assert "  template: 1" in text


def test_empty_summary() -> None:
    summary = Summary()
    assert summary.percentile(0.99) is None
    assert summary.render() == "runs 0: ok 0, failed 0 (timed out 0)"
