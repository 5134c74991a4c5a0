"""Concurrency bursts against one server each: N requests at once, as Arize runs a dataset's rows.

A `Burst` names the server, how many requests, and the wall-time target; the summary adds the
peak resident memory of the server process (VmHWM), which includes its start-up.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from bench import burst
from bench.server import HOST, Server, free_ports, serving

BURST_TIMEOUT = 30.0  # seconds a request of a burst may take before it counts as failed
COLUMNS = f"  {'scenario':<32} {'200 OK':>9} {'first':>7} {'last':>7} {'peak RSS':>10}  target"


@dataclass(frozen=True)
class Burst:
    name: str
    server: Server
    requests: int
    target_seconds: float | None  # None: shown for comparison, no target
    note: str = ""


@dataclass(frozen=True)
class BurstSummary:
    name: str
    requests: int
    ok: int
    first_seconds: float | None
    wall_seconds: float | None
    target_seconds: float | None
    met_target: bool | None
    rss_before_mib: float
    peak_rss_mib: float
    outcomes: dict[str, int]
    note: str


def measure(spec: Burst, workdir: Path) -> BurstSummary:
    (port,) = free_ports(1)
    server = spec.server
    with serving(server, port, workdir) as running:
        rss_before = running.memory_mib("VmRSS")
        request = burst.http_request(HOST, port, server.path, server.headers, server.body)
        result = asyncio.run(
            burst.burst(
                HOST, port, request, spec.requests, expected=server.expected, within=BURST_TIMEOUT
            )
        )
        peak = running.memory_mib("VmHWM")
    met = None
    if spec.target_seconds is not None:  # a burst with failed requests misses its target too
        met = (
            result.failed == 0
            and result.wall_seconds is not None
            and result.wall_seconds <= spec.target_seconds
        )
    return BurstSummary(
        name=spec.name,
        requests=result.requests,
        ok=result.ok,
        first_seconds=result.first_seconds,
        wall_seconds=result.wall_seconds,
        target_seconds=spec.target_seconds,
        met_target=met,
        rss_before_mib=rss_before,
        peak_rss_mib=peak,
        outcomes=result.outcomes,
        note=spec.note,
    )


def print_header() -> None:
    print(
        "\nConcurrency: N requests at once on N connections; first/last: seconds from the "
        "first write to the first/last complete response"
    )
    print(COLUMNS)


def print_line(s: BurstSummary) -> None:
    if s.target_seconds is None:
        target = f"({s.note})" if s.note else ""
    else:
        target = f"<= {s.target_seconds:g} s  {'PASS' if s.met_target else 'FAIL'}"
    print(
        f"  {s.name:<32} {f'{s.ok}/{s.requests}':>9} {_seconds(s.first_seconds):>7} "
        f"{_seconds(s.wall_seconds):>7} {s.peak_rss_mib:>6.1f} MiB  {target}",
        flush=True,
    )
    if s.ok != s.requests:
        failures = {k: v for k, v in s.outcomes.items() if k != burst.OK}
        print(f"    FAILED requests: {failures}", flush=True)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"
