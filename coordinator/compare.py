"""`coordinator compare A.jsonl B.jsonl`: two runs of one dataset, side by side in the terminal.

What Phoenix's comparison view shows for two experiments, from their results files: per
evaluator the mean score and the pass rate, latency p50/p95, failed runs, and the rows whose
verdict changed, worst first (a row that went from pass to fail before one that went from fail
to pass). Rows are matched by example id (the row's position when a file has none).

`--fail-if-worse` makes it a CI gate: exit 1 when B has more failed runs than A, or a lower pass
rate on any evaluator both have (by more than `--tolerance` percentage points).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from coordinator.evaluators import Verdict
from coordinator.runner import RunResult
from coordinator.summary import EvalStats, Summary

EXIT_WORSE = 1
RUN = "(run)"  # the pseudo-evaluator of a row's run itself: ok or failed
# How good a verdict is, to order the changes: a failed run or a broken evaluator is worst.
RANK = {"pass": 2, "fail": 1, "error": 0, "run failed": 0, "missing": 0}


class CompareError(ValueError):
    """A results file that cannot be read; the message names it and the line."""


@dataclass
class Side:
    """One results file, folded: its summary and each row's verdicts."""

    path: Path
    summary: Summary = field(default_factory=Summary)
    verdicts: dict[str, dict[str, str]] = field(default_factory=dict)  # example -> name -> verdict

    @classmethod
    def read(cls, path: Path) -> Side:
        side = cls(path)
        names = {f.name for f in fields(RunResult)}
        try:
            handle = path.open(encoding="utf-8")
        except OSError as exc:
            raise CompareError(f"{path}: {exc.strerror}") from None
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    loaded = json.loads(line)
                    result = RunResult(**{k: v for k, v in loaded.items() if k in names})
                except (json.JSONDecodeError, TypeError) as exc:
                    raise CompareError(
                        f"{path}:{number}: not a line of a results file ({exc}); compare reads "
                        "the results.jsonl that `coordinator run` writes"
                    ) from None
                side.add(result)
        return side

    def add(self, result: RunResult) -> None:
        self.summary.add(result)
        key = result.example_id or f"ex_{result.index}"
        row = {RUN: "pass" if result.ok else "run failed"}
        for name, verdict in (result.evaluations or {}).items():
            row[name] = _verdict_word(verdict)
        self.verdicts[key] = row


def _verdict_word(verdict: dict[str, Any]) -> str:
    read = Verdict(**verdict)
    if read.error is not None:
        return "error"
    return {True: "pass", False: "fail", None: "missing"}[read.passed]


@dataclass(frozen=True)
class Change:
    example_id: str
    delta: int  # the sum of the rank changes: negative is worse
    changes: tuple[tuple[str, str, str], ...]  # (evaluator, verdict in A, verdict in B)

    def render(self) -> str:
        what = "; ".join(f"{name} {a} → {b}" for name, a, b in self.changes)
        return f"  {self.example_id}: {what}"


def changes(a: Side, b: Side) -> list[Change]:
    """Rows in both whose verdicts differ, worst first; a row's run failing counts as a change
    of every evaluator, whose verdict then is `run failed`."""
    found = []
    for example, row_a in a.verdicts.items():
        row_b = b.verdicts.get(example)
        if row_b is None:
            continue
        pairs = []
        for name in sorted(row_a.keys() | row_b.keys()):
            va = _word(row_a, name)
            vb = _word(row_b, name)
            if va != vb:
                pairs.append((name, va, vb))
        if pairs:
            delta = sum(RANK[vb] - RANK[va] for _, va, vb in pairs)
            found.append(Change(example, delta, tuple(pairs)))
    return sorted(found, key=lambda c: (c.delta, c.example_id))


def _word(row: dict[str, str], name: str) -> str:
    if name != RUN and row[RUN] == "run failed":
        return "run failed"
    return row.get(name, "missing")


def worse(a: Side, b: Side, tolerance: float = 0.0) -> list[str]:
    """Why B is worse than A (empty: it is not)."""
    reasons = []
    if b.summary.failed > a.summary.failed:
        reasons.append(f"failed runs {a.summary.failed} → {b.summary.failed}")
    for name, stats_a in a.summary.evaluations.items():
        stats_b = b.summary.evaluations.get(name)
        if stats_b is None or stats_a.pass_rate is None:
            continue
        rate_b = stats_b.pass_rate or 0.0
        if (stats_a.pass_rate - rate_b) * 100 > tolerance:
            reasons.append(f"{name} pass rate {stats_a.pass_rate:.0%} → {rate_b:.0%}")
    return reasons


def render(a: Side, b: Side, *, limit: int = 20) -> str:
    width = max(16, *(len(n) + 6 for n in {*a.summary.evaluations, *b.summary.evaluations}))

    def line(label: str, va: str, vb: str, delta: str = "") -> str:
        return f"{label:<{width}} {va:>12} {vb:>12} {delta:>10}".rstrip()

    lines = [f"A: {a.path}", f"B: {b.path}", line("", "A", "B", "B - A")]
    sa, sb = a.summary, b.summary
    lines.append(line("runs ok", f"{sa.ok}/{sa.total}", f"{sb.ok}/{sb.total}"))
    lines.append(
        line("failed runs", str(sa.failed), str(sb.failed), _signed(sb.failed - sa.failed))
    )
    for label, fraction in (("latency p50", 0.5), ("latency p95", 0.95)):
        pa, pb = sa.percentile(fraction), sb.percentile(fraction)
        delta = f"{pb - pa:+.1f}" if pa is not None and pb is not None else ""
        lines.append(line(f"{label} ms", _num(pa, ".1f"), _num(pb, ".1f"), delta))
    for name in sorted({*sa.evaluations, *sb.evaluations}):
        ea, eb = sa.evaluations.get(name, EvalStats()), sb.evaluations.get(name, EvalStats())
        mean_delta = (
            f"{eb.mean - ea.mean:+.2f}" if ea.mean is not None and eb.mean is not None else ""
        )
        lines.append(line(f"{name} mean", _num(ea.mean, ".2f"), _num(eb.mean, ".2f"), mean_delta))
        rate_delta = (
            f"{(eb.pass_rate - ea.pass_rate) * 100:+.0f} pts"
            if ea.pass_rate is not None and eb.pass_rate is not None
            else ""
        )
        lines.append(line(f"{name} pass", _pct(ea.pass_rate), _pct(eb.pass_rate), rate_delta))
        if ea.errors or eb.errors:
            lines.append(line(f"{name} errors", str(ea.errors), str(eb.errors)))
    found = changes(a, b)
    only = len(a.verdicts.keys() ^ b.verdicts.keys())
    if only:
        lines.append(f"rows in one file only: {only}")
    if not found:
        lines.append("verdict changes: none")
        return "\n".join(lines)
    lines.append(f"verdict changes: {len(found)} rows (worst first)")
    lines.extend(change.render() for change in found[:limit])
    if len(found) > limit:
        lines.append(f"  ... and {len(found) - limit} more")
    return "\n".join(lines)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _signed(value: int) -> str:
    return f"{value:+d}" if value else ""
