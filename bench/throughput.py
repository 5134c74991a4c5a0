"""Throughput and latency under wrk: servers side by side, rounds alternating, medians compared.

Every server runs for the whole measurement; each round loads them one after the other in list
order (seed, ours, seed, ours, ...) so drift on the machine hits all of them alike, and the
median over rounds is reported. The first server is the baseline of the throughput ratios.
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
    failed: int  # non-2xx responses and socket errors, all rounds together
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
        for server in running:
            wrk.run_wrk(wrk_path, server, scripts[server.name], WARMUP_SECONDS, load.connections)
        rounds: dict[str, list[wrk.WrkResult]] = {name: [] for name in names}
        for number in range(1, load.rounds + 1):
            for server in running:
                result = wrk.run_wrk(
                    wrk_path, server, scripts[server.name], load.duration, load.connections
                )
                rounds[server.name].append(result)
                print(f"round {number}/{load.rounds} {_round_line(server, result)}", flush=True)
    return summarise(rounds)


def _round_line(server: RunningServer, result: wrk.WrkResult) -> str:
    failed = f", {result.failed} FAILED" if result.failed else ""
    return (
        f"{server.name:<8} {result.requests_per_second:>10,.0f} req/s  "
        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms{failed}"
    )


def summarise(rounds: Mapping[str, list[wrk.WrkResult]]) -> list[ThroughputSummary]:
    """Medians per server, in the order given; ratios against the first."""
    summaries: list[ThroughputSummary] = []
    for name, results in rounds.items():
        rate = statistics.median(r.requests_per_second for r in results)
        baseline = summaries[0].requests_per_second if summaries else rate
        summaries.append(
            ThroughputSummary(
                name=name,
                requests_per_second=rate,
                p50_ms=statistics.median(r.p50_ms for r in results),
                p99_ms=statistics.median(r.p99_ms for r in results),
                ratio=rate / baseline,
                failed=sum(r.failed for r in results),
                rounds=results,
            )
        )
    return summaries


def print_table(summaries: Sequence[ThroughputSummary], load: Load) -> None:
    print(
        f"\nThroughput: wrk -t 1 -c {load.connections}, {load.duration} s per run, "
        f"median of {load.rounds} rounds"
    )
    print(f"  {'app':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs ' + summaries[0].name:>9}")
    for s in summaries:
        failed = f"  {s.failed} FAILED (non-2xx or socket errors)" if s.failed else ""
        print(
            f"  {s.name:<8} {s.requests_per_second:>10,.0f} {s.p50_ms:>8.2f} {s.p99_ms:>8.2f} "
            f"{s.ratio:>9.2f}{failed}"
        )
