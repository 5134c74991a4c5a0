"""Tracing variants of the throughput comparison: OTLP settings, the local sink, the span count.

A server exports spans when its `Server` entry carries `otlp_env(...)`: the standard OTEL_*
variables, with its own `service.name` so the one sink (bench/otlp_sink.py, a process of its
own) can tell whose spans it received. After the run the sink's counts are set against the
requests each server answered: about one span per request or more means tracing really ran;
none means the row measured an app that exported nothing, and the report says so loudly.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.server import HOST, RunningServer, Server, ServerError, free_ports, serving
from bench.throughput import ThroughputSummary

SERVICE_VARIABLE = "OTEL_SERVICE_NAME"
ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
COUNT_TIMEOUT = 10.0

SINK = Server(
    name="otlp-sink",
    argv=(sys.executable, "-m", "bench.otlp_sink"),
    env={},
    path="/count",
    headers={},
    body=b"",
    expected=None,
)


def otlp_env(service: str, endpoint: str) -> dict[str, str]:
    """Export spans over OTLP/HTTP to `endpoint` (the exporter adds /v1/traces), nothing else."""
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        ENDPOINT_VARIABLE: endpoint,
        SERVICE_VARIABLE: service,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }


NO_EXPORT_ENV = {"OTEL_TRACES_EXPORTER": "none"}


@dataclass(frozen=True)
class SinkCounts:
    """GET /count of bench/otlp_sink.py."""

    spans: int
    exports: int
    rejected: int
    cpu_seconds: float
    by_service: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Sink:
    endpoint: str  # where a live export goes
    down_endpoint: str  # a port on 127.0.0.1 that refuses connections
    running: RunningServer
    start_cpu_seconds: float  # the sink's start-up (imports), left out of `counts()`

    def counts(self) -> SinkCounts:
        """What the sink has received, and the CPU it has used since it was ready."""
        counts = fetch_counts(self.running)
        return replace(counts, cpu_seconds=round(counts.cpu_seconds - self.start_cpu_seconds, 3))


@contextlib.contextmanager
def running_sink(workdir: Path) -> Iterator[Sink]:
    """The sink process, and a closed port held for the "endpoint down" variants."""
    sink_port, down_port = free_ports(2)
    with closed_port(down_port), serving(SINK, sink_port, workdir, check=fetch_counts) as sink:
        endpoint, down = f"http://{HOST}:{sink_port}", f"http://{HOST}:{down_port}"
        yield Sink(endpoint, down, sink, fetch_counts(sink).cpu_seconds)


@contextlib.contextmanager
def closed_port(port: int) -> Iterator[None]:
    """Bind `port` without listening: connections are refused, and no server can take it."""
    with socket.socket() as sock:
        sock.bind((HOST, port))
        yield


def fetch_counts(running: RunningServer) -> SinkCounts:
    url = f"http://{HOST}:{running.port}{SINK.path}"
    try:
        with urllib.request.urlopen(url, timeout=COUNT_TIMEOUT) as response:
            data: dict[str, Any] = json.load(response)
        return SinkCounts(
            spans=int(data["spans"]),
            exports=int(data["exports"]),
            rejected=int(data["rejected"]),
            cpu_seconds=float(data["cpu_seconds"]),
            by_service={str(k): int(v) for k, v in data["by_service"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServerError(f"{running.name}: GET {url} failed: {exc}\n{running.log_tail()}") from exc


@dataclass(frozen=True)
class SpanCount:
    """Spans the sink received from one exporting server, against the requests it answered."""

    name: str
    service: str
    live: bool  # False: its endpoint was down, so the sink cannot have received anything
    spans: int
    requests: int

    @property
    def per_request(self) -> float:
        return self.spans / self.requests if self.requests else 0.0

    @property
    def silent(self) -> bool:
        """A live exporter whose spans never arrived: its tracing is not running."""
        return self.live and self.spans == 0


def span_counts(
    servers: Sequence[Server],
    summaries: Sequence[ThroughputSummary],
    counts: SinkCounts,
    sink: Sink,
) -> list[SpanCount]:
    """One line per server that was told to export (it has an OTLP endpoint)."""
    requests = {s.name: s.requests_total for s in summaries}
    found = []
    for server in servers:
        endpoint = server.env.get(ENDPOINT_VARIABLE)
        if endpoint is None:
            continue
        service = server.env.get(SERVICE_VARIABLE, "")
        live = endpoint == sink.endpoint
        spans = counts.by_service.get(service, 0) if live else 0
        found.append(SpanCount(server.name, service, live, spans, requests[server.name]))
    return found


def table_notes(found: Sequence[SpanCount]) -> dict[str, str]:
    """A mark on the throughput table for each exporting server whose spans never arrived."""
    return {line.name: "<- NO SPANS EXPORTED (see below)" for line in found if line.silent}


def print_spans(found: Sequence[SpanCount], counts: SinkCounts) -> None:
    print(
        f"\nSpans at the OTLP sink: {counts.spans:,} in {counts.exports:,} exports; the sink is a "
        f"process of its own on the same {os.cpu_count()} cores as the servers and wrk, and "
        f"used {counts.cpu_seconds:.2f} s of CPU"
    )
    width = max(len(line.name) for line in found) if found else 0
    for line in found:
        if not line.live:
            print(f"  {line.name:<{width}}  endpoint down, nothing to receive")
            continue
        print(
            f"  {line.name:<{width}}  {line.spans:>10,} spans / {line.requests:>9,} requests "
            f"= {line.per_request:.2f} per request"
        )
    known = {line.service for line in found}
    others = {name: n for name, n in counts.by_service.items() if name not in known}
    if others:
        print(f"  spans under other service names (OTEL_SERVICE_NAME not honoured?): {others}")
    if counts.rejected:
        print(f"  WARNING: the sink rejected {counts.rejected} POSTs (wrong path or payload)")
    for line in found:
        if line.silent:
            warning = (
                f"WARNING: {line.name} exported NO spans to the sink over {line.requests:,} "
                f"requests: tracing is NOT active in it (or ignores {ENDPOINT_VARIABLE}), so its "
                "row above measures an app without tracing"
            )
            print(f"  {warning}")
            print(f"bench: {warning}", file=sys.stderr)


def as_json(found: Sequence[SpanCount], counts: SinkCounts) -> Mapping[str, Any]:
    return {
        "sink": counts,
        "servers": [
            {**asdict(line), "per_request": line.per_request, "silent": line.silent}
            for line in found
        ],
    }
