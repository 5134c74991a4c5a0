"""The end-of-run summary: counts, latency percentiles, slowest rows, error kinds, and each
evaluator's mean score and pass rate."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from coordinator.evaluators import Verdict
from coordinator.runner import RunResult

SLOWEST = 5
BUCKET_GROWTH = 1.01
MIN_LATENCY_MS = 0.001


@dataclass
class EvalStats:
    """One evaluator over a run: mean of its scores, and how many verdicts passed."""

    scored: int = 0
    score_sum: float = 0.0
    judged: int = 0  # verdicts that passed or failed (not errors, not unscored labels)
    passed: int = 0
    errors: int = 0

    def add(self, verdict: dict[str, Any]) -> None:
        read = Verdict(**verdict)
        if read.error is not None:
            self.errors += 1
        if read.score is not None:
            self.scored += 1
            self.score_sum += read.score
        if read.passed is not None:
            self.judged += 1
            self.passed += read.passed

    @property
    def mean(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.judged if self.judged else None

    def render(self) -> str:
        mean = "-" if self.mean is None else f"{self.mean:.2f}"
        rate = (
            "-" if self.pass_rate is None else f"{self.pass_rate:.0%} ({self.passed}/{self.judged})"
        )
        errors = f", errors {self.errors}" if self.errors else ""
        return f"mean {mean}, pass rate {rate}{errors}"


@dataclass
class Summary:
    """Folded one result at a time, so a million rows cost a few megabytes."""

    ok: int = 0
    failed: int = 0
    timed_out: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    # Latencies as a log-scale histogram (1 % wide buckets): percentiles within 1 %, and the
    # same few kilobytes whether the dataset has a thousand rows or a million.
    latency_buckets: Counter[int] = field(default_factory=Counter)
    slowest: list[tuple[float, int, str]] = field(default_factory=list)
    evaluations: dict[str, EvalStats] = field(default_factory=dict)

    def add(self, result: RunResult) -> None:
        for name, verdict in (result.evaluations or {}).items():
            self.evaluations.setdefault(name, EvalStats()).add(verdict)
        if result.ok:
            self.ok += 1
        else:
            self.failed += 1
            assert result.error is not None  # noqa: S101 - not ok means an error is set
            kind = result.error["kind"]
            self.timed_out += kind == "timeout"
            self.error_kinds[_error_kind(result)] += 1
        if result.latency_ms is not None:
            self.latency_buckets[_bucket(result.latency_ms)] += 1
            entry = (result.latency_ms, result.index, result.example_id)
            if len(self.slowest) < SLOWEST:
                heapq.heappush(self.slowest, entry)
            else:
                heapq.heappushpop(self.slowest, entry)

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def percentile(self, fraction: float) -> float | None:
        """The latency (ms, within 1 %) below which `fraction` of the runs finished."""
        count = sum(self.latency_buckets.values())
        if not count:
            return None
        rank = max(1, math.ceil(fraction * count))
        seen = 0
        for bucket in sorted(self.latency_buckets):
            seen += self.latency_buckets[bucket]
            if seen >= rank:
                return BUCKET_GROWTH**bucket
        raise AssertionError("unreachable: the ranks add up to count")

    def render(self) -> str:
        lines = [
            f"runs {self.total}: ok {self.ok}, failed {self.failed} (timed out {self.timed_out})",
        ]
        marks = ", ".join(
            f"p{int(f * 100)} {value:.1f} ms"
            for f in (0.5, 0.95, 0.99)
            if (value := self.percentile(f)) is not None
        )
        if marks:
            lines.append(f"latency: {marks}")
        if self.slowest:
            lines.append("slowest rows:")
            lines.extend(
                f"  row {index} ({example}): {ms:.1f} ms"
                for ms, index, example in sorted(self.slowest, reverse=True)
            )
        if self.error_kinds:
            lines.append("errors:")
            lines.extend(f"  {kind}: {count}" for kind, count in self.error_kinds.most_common())
        if self.evaluations:
            lines.append("evaluations:")
            lines.extend(f"  {name}: {stats.render()}" for name, stats in self.evaluations.items())
        return "\n".join(lines)


def _error_kind(result: RunResult) -> str:
    """`timeout`, `connection`, `template`, or `http 422 input_schema_violation` and the like."""
    assert result.error is not None  # noqa: S101
    kind = str(result.error["kind"])
    if result.status is None:
        return kind
    body = result.error.get("body")
    detail = body.get("error") if isinstance(body, dict) else None
    named = detail.get("type") if isinstance(detail, dict) else None
    return (
        f"{kind} {result.status} {named}" if isinstance(named, str) else f"{kind} {result.status}"
    )


def _bucket(latency_ms: float) -> int:
    """The histogram bucket whose upper bound is the smallest power of 1.01 >= the latency."""
    return math.ceil(math.log(max(latency_ms, MIN_LATENCY_MS), BUCKET_GROWTH))
