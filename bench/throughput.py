"""Throughput and latency under wrk: servers side by side, rounds alternating, medians compared.

Every server runs for the whole measurement; each round loads them one after the other in list
order (seed, ours, seed, ours, ...) so drift on the machine hits all of them alike, and the
median over rounds is reported. The first server is the baseline of the throughput ratios.

Two ratios are shown. "vs seed" divides the medians. "paired" takes each round's ratio (this
server's req/s over the baseline's in the same round, seconds apart) and reports their median
and range: on a shared VM whose speed drifts between rounds, this is the steadier estimate.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import wrk
from bench.server import RunningServer, Server, free_ports, serving

WARMUP_SECONDS = 2
NAME_WIDTH = 14  # wide enough for the names of bench/invoke.py's servers


@dataclass(frozen=True)
class Load:
    """How wrk loads each server."""

    duration: int  # seconds per run
    connections: int
    rounds: int


@dataclass(frozen=True)
class ThroughputSummary:
    name: str
    requests_per_second: float  # median over the rounds, like the latencies
    p50_ms: float
    p99_ms: float
    ratio: float  # requests/s relative to the first server
    paired_ratios: list[float]  # per round: req/s over the first server's in the same round
    cpu_us_per_request: float  # the server process's CPU time per response, median
    cpu_ratio: float  # the first server's CPU per request over this one's
    failed: int  # non-2xx responses and socket errors, all rounds together
    requests_total: int  # every response it sent: start-up check, warm-up and rounds
    rounds: list[wrk.WrkResult]


def measure(
    wrk_path: str, servers: Sequence[Server], load: Load, workdir: Path
) -> list[ThroughputSummary]:
    names = [server.name for server in servers]
    if len(set(names)) != len(names):
        raise ValueError(f"server names must be distinct: {names}")
    with contextlib.ExitStack() as stack:
        running = [
            stack.enter_context(serving(server, port, workdir))
            for server, port in zip(servers, free_ports(len(servers)), strict=True)
        ]
        scripts = {r.name: wrk.write_script(r.server, workdir) for r in running}
        print(f"warm-up: {WARMUP_SECONDS} s per app", flush=True)
        warmups = {
            server.name: wrk.run_wrk(
                wrk_path, server, scripts[server.name], WARMUP_SECONDS, load.connections
            )
            for server in running
        }
        rounds: dict[str, list[wrk.WrkResult]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for number in range(1, load.rounds + 1):
            for server in running:
                cpu_before = server.cpu_seconds()
                result = wrk.run_wrk(
                    wrk_path, server, scripts[server.name], load.duration, load.connections
                )
                used = server.cpu_seconds() - cpu_before
                rounds[server.name].append(result)
                cpu[server.name].append(used * 1e6 / max(result.requests, 1))
                line = _round_line(server, result, cpu[server.name][-1])
                print(f"round {number}/{load.rounds} {line}", flush=True)
    return summarise(rounds, warmups, cpu)


def _round_line(server: RunningServer, result: wrk.WrkResult, cpu_us: float) -> str:
    failed = f", {result.failed} FAILED" if result.failed else ""
    return (
        f"{server.name:<{NAME_WIDTH}} {result.requests_per_second:>10,.0f} req/s  "
        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
        f"CPU {cpu_us:5.0f} us/req{failed}"
    )


def summarise(
    rounds: Mapping[str, list[wrk.WrkResult]],
    warmups: Mapping[str, wrk.WrkResult],
    cpu_us: Mapping[str, list[float]],
) -> list[ThroughputSummary]:
    """Medians per server, in the order given; ratios against the first."""
    summaries: list[ThroughputSummary] = []
    for name, results in rounds.items():
        rate = statistics.median(r.requests_per_second for r in results)
        baseline = summaries[0].requests_per_second if summaries else rate
        cpu = statistics.median(cpu_us[name])
        baseline_cpu = summaries[0].cpu_us_per_request if summaries else cpu
        first = next(iter(rounds.values()))
        paired = [
            r.requests_per_second / b.requests_per_second if b.requests_per_second else 0.0
            for r, b in zip(results, first, strict=True)
        ]
        summaries.append(
            ThroughputSummary(
                name=name,
                requests_per_second=rate,
                paired_ratios=paired,
                p50_ms=statistics.median(r.p50_ms for r in results),
                p99_ms=statistics.median(r.p99_ms for r in results),
                ratio=rate / baseline,
                cpu_us_per_request=cpu,
                cpu_ratio=baseline_cpu / cpu if cpu else 0.0,
                failed=sum(r.failed for r in results),
                requests_total=1 + warmups[name].requests + sum(r.requests for r in results),
                rounds=results,
            )
        )
    return summaries


def paired_text(summary: ThroughputSummary) -> str:
    """Median of the per-round ratios, and their range."""
    ratios = summary.paired_ratios
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def print_table(
    summaries: Sequence[ThroughputSummary], load: Load, notes: Mapping[str, str] | None = None
) -> None:
    """The summaries, with `notes[name]` at the end of a server's line when given."""
    print(
        f"\nThroughput: wrk -t 1 -c {load.connections}, {load.duration} s per run, "
        f"median of {load.rounds} rounds"
    )
    width = max(NAME_WIDTH, *(len(s.name) for s in summaries))
    vs = "vs " + summaries[0].name
    print(
        f"  {'app':<{width}} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {vs:>9}"
        f"  {'paired (range)':>16}   {'CPU us/req':>10} {vs:>9}"
    )
    for s in summaries:
        failed = f"  {s.failed} FAILED (non-2xx or socket errors)" if s.failed else ""
        note = f"  {notes[s.name]}" if notes and s.name in notes else ""
        print(
            f"  {s.name:<{width}} {s.requests_per_second:>10,.0f} {s.p50_ms:>8.2f} "
            f"{s.p99_ms:>8.2f} {s.ratio:>9.2f}  {paired_text(s):>16}   "
            f"{s.cpu_us_per_request:>10.0f} "
            f"{s.cpu_ratio:>9.2f}{failed}{note}"
        )
    print(
        "  paired: the median (and range) of each round's ratio, the servers measured seconds "
        "apart\n"
        "  CPU us/req: the server process's CPU time (all its threads) per response; "
        f"{summaries[0].name}'s over\n  an app's estimates their throughput ratio on a core of "
        "their own, and moves less than req/s\n  when other work shares the machine"
    )
