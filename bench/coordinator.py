"""Benchmark of the coordinator stand-in: `python -m bench.coordinator` (`make bench-coordinator`).

How long: about 70 s of fixed work (the memory part, warm-up, wrk) plus twice the time the
coordinator takes for `--rows` rows: about 2 minutes on 2 cores at the target rate, longer while
the coordinator is slower. `--rows 2000 --memory-rows 100000` for a quick look. Every figure is
also written as JSON to bench/results/coordinator-<timestamp>.json.

What it measures
----------------
0. Start-up: `agent-endpoint coordinator run --dry-run` on a 1-row dataset, the fixed cost
   (interpreter, imports, opening the dataset) included in every wall time below.
1. Rate: how many dataset rows per second `agent-endpoint coordinator run` gets through a no-op
   endpoint, next to what wrk gets from the same endpoint in the same run.
   - The endpoint: this app (`app.main:app`, one uvicorn process on 127.0.0.1, uvloop, httptools)
     with the no-op async agent bench.agents:noop and API-key auth on, the same server as
     bench/invoke.py's `ours`. One server for both drivers.
   - The coordinator: a subprocess, `--concurrency C --retries 0` with the auth header, over a
     generated JSONL dataset of `--rows` rows (template `{"goal": "{{question}}", "config":
     {...}}`). Its time runs from the start of the process to its exit, start-up included. Every
     line of its results file must be HTTP 200 with no error, or the run counts as failed.
   - wrk: one thread, C keep-alive connections (the same C), sending the body the coordinator
     sends for row 0 (Arize's envelope with its generated ids) with the same headers (auth,
     traceparent, tracestate, baggage), for as many whole seconds as the coordinator run just
     before it took, within 2-15 s (wrk's rate is steady after a few seconds).
   Rounds alternate coordinator, wrk, coordinator, wrk (after a 2 s wrk warm-up) and the medians
   are compared: target coordinator >= 0.5 x wrk's requests/s. Both drivers share the 2 cores
   with the server, so this is a ratio of client efficiencies: wrk (written in C, a few
   microseconds per request) leaves nearly a whole core to the server, while the coordinator's
   CPU time per row (hydrating, ids, JSON, httpx, the results line) caps its rate once it fills
   a core. `coordinator CPU` is its user + system time per row and in cores (wait4): near 1.00
   cores, the coordinator is the bottleneck. `server CPU` is the server's time per request
   (/proc/<pid>/stat) under each driver; it rises when requests arrive one at a time instead
   of in batches, so it is higher under a slow driver.
2. Memory: `--dry-run` (hydrates every row and writes every results line, sends nothing) on
   `--baseline-rows` (10,000) and `--memory-rows` (1,000,000) rows. `peak RSS` is the
   coordinator process's peak resident set from wait4(2) (`ru_maxrss`, what `/usr/bin/time -v`
   calls "Maximum resident set size"; see bench/measured.py). Flat memory: target the large
   run's peak within +20 MiB and 1.2 x of the small run's. Rows/s of the dry run is the
   coordinator's cost per row without any HTTP. A dry run has no latencies and no failures, so
   what a real run keeps per row (the summary's latency list, failed results) is not in it.
Each target shows PASS/FAIL; a missed target is reported, not fatal.

Exit status: 0 when every row of every run and every wrk request succeeded, 1 when any failed
(or a server or the coordinator did not start or finish), 2 when wrk or the coordinator command is
missing or a flag is wrong, 130 on Ctrl-C. Servers are always stopped and the temporary
directory (datasets, results files) is always removed.
Figures from one machine compare with each other only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dataset_file, throughput, wrk
from bench.agents import answer
from bench.invoke import machine_facts, our_server, raise_open_files_limit
from bench.measured import Measured, MeasuredError, run_measured
from bench.payload import new_api_key, request_headers
from bench.report import at_least_2, conclude, positive
from bench.server import RunningServer, Server, ServerError, child_env, free_ports, serving
from coordinator.runner import traceparent
from coordinator.template import hydrate

COORDINATOR = Path(sys.executable).parent / "agent-endpoint"
EXIT_USAGE = 2

RATE_TARGET = 0.5  # coordinator rows/s over wrk requests/s, at least
FLAT_RATIO = 1.2  # peak RSS of the large dry run over the small one's, at most
FLAT_SLACK_MIB = 20.0  # ... and at most this much more
SPACE_ID = "sp_local"  # the coordinator's defaults, spelled out for the wrk request
PROJECT = "local-experiments"
TRACESTATE = "arize=local-coordinator"
WRK_SECONDS = (2, 15)  # wrk's duration: the coordinator run's, within these bounds
REQUEST_TIMEOUT = 30.0  # seconds per request the coordinator waits
# Time limits for a coordinator process: a fixed allowance plus rows at a very low rate.
START_ALLOWANCE = 60.0
SLOWEST_ROWS_PER_SECOND = 100.0
SLOWEST_DRY_ROWS_PER_SECOND = 1000.0
FAILURE_LINES = 8  # lines of the coordinator's output shown when a run failed
MIB = 1024 * 1024


# ---------------------------------------------------------------- what is measured


@dataclass(frozen=True)
class CoordinatorRun:
    """One `agent-endpoint coordinator run` process, network or dry."""

    rows: int
    ok: int  # results lines with the expected status and no error
    outcomes: dict[str, int]  # "ok", "HTTP 503", "timeout", "missing" ... -> rows
    exit_code: int
    wall_seconds: float
    rows_per_second: float
    cpu_seconds: float
    cpu_us_per_row: float
    peak_rss_mib: float
    server_cpu_us_per_request: float | None  # None for a dry run (no server)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.ok == self.rows


@dataclass(frozen=True)
class WrkRun:
    seconds: int
    result: wrk.WrkResult
    server_cpu_us_per_request: float


@dataclass(frozen=True)
class RateSummary:
    rows: int
    connections: int
    coordinator_rows_per_second: float  # medians over the rounds
    wrk_requests_per_second: float
    ratio: float
    target: float
    met_target: bool
    coordinator_runs: list[CoordinatorRun]
    wrk_runs: list[WrkRun]


@dataclass(frozen=True)
class MemorySummary:
    small: CoordinatorRun
    large: CoordinatorRun
    growth_mib: float
    ratio: float
    met_target: bool


# ---------------------------------------------------------------- the request and the server


def sample_request(api_key: str) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    """What the coordinator sends for row 0 (body, headers) and what the no-op agent answers."""
    first = dataset_file.row(0)
    body = hydrate(dataset_file.TEMPLATE, first)
    envelope = {
        "input": body,
        "arize_metadata": {
            "dataset_id": f"ds_{uuid.uuid4().hex[:12]}",
            "experiment_id": f"exp_{uuid.uuid4().hex[:12]}",
            "run_id": f"run_{uuid.uuid4().hex[:16]}",
            "example_id": first["id"],
            "space_id": SPACE_ID,
            "project_name": PROJECT,
        },
    }
    headers = {
        **request_headers(api_key),
        "traceparent": traceparent()[0],
        "tracestate": TRACESTATE,
        "baggage": f"arize.space_id={SPACE_ID},arize.project_name={PROJECT}",
    }
    return json.dumps(envelope, ensure_ascii=False).encode(), headers, answer(body)


def noop_server(api_key: str, connections: int) -> Server:
    """bench/invoke.py's `ours`, checked with the coordinator's request for row 0."""
    body, headers, expected = sample_request(api_key)
    server = our_server(
        "ours", api_key, "bench.agents:noop", max_concurrency=str(max(64, connections))
    )
    return dataclasses.replace(server, body=body, headers=headers, expected=expected)


def server_cpu_seconds(running: RunningServer) -> float:
    """User + system CPU time of the server process so far (/proc/<pid>/stat, clock ticks)."""
    stat = Path(f"/proc/{running.process.pid}/stat").read_text(encoding="ascii")
    fields = stat.rpartition(")")[2].split()  # fields 3.. of proc(5); utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- running the coordinator


def run_coordinator(
    workdir: Path,
    dataset: Path,
    rows: int,
    *,
    url: str = "http://127.0.0.1:9/invoke",  # a dry run sends nothing
    api_key: str = "",
    concurrency: int = 10,
    dry_run: bool = False,
    server: RunningServer | None = None,
) -> CoordinatorRun:
    """Run the coordinator over `dataset`, check its results file, then delete it."""
    results = workdir / "results.jsonl"
    command = [
        str(COORDINATOR),
        "coordinator",
        "run",
        "--url",
        url,
        "--dataset",
        str(dataset),
        "--template",
        json.dumps(dataset_file.TEMPLATE),
        "--shape",
        "wrapped",  # the `{{question}}` template and wrk's body are the setup page's shape
        "--concurrency",
        str(concurrency),
        "--retries",
        "0",  # a failed request is a failure, not a slower success
        "--timeout",
        f"{REQUEST_TIMEOUT:g}",
        "--results",
        str(results),
        "--space-id",
        SPACE_ID,
        "--project",
        PROJECT,
    ]
    if api_key:
        command += ["--header", f"Authorization: Bearer {api_key}"]
    if dry_run:
        command.append("--dry-run")
    floor = SLOWEST_DRY_ROWS_PER_SECOND if dry_run else SLOWEST_ROWS_PER_SECOND
    cpu_before = server_cpu_seconds(server) if server else 0.0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            measured = run_measured(
                command,
                env=child_env({}),
                cwd=workdir,
                timeout=START_ALLOWANCE + rows / floor,
                stdout=out,
                stderr=err,
            )
            server_cpu = server_cpu_seconds(server) - cpu_before if server else None
            outcomes = read_outcomes(results, rows, expected_status=None if dry_run else 200)
        finally:
            results.unlink(missing_ok=True)
        run = _coordinator_run(rows, measured, outcomes, server_cpu)
        if not run.succeeded:
            _print_failure(run, out, err)
    return run


def _coordinator_run(
    rows: int, measured: Measured, outcomes: Counter[str], server_cpu: float | None
) -> CoordinatorRun:
    requests = sum(outcomes.values()) - outcomes["missing"]
    return CoordinatorRun(
        rows=rows,
        ok=outcomes["ok"],
        outcomes=dict(outcomes),
        exit_code=measured.exit_code,
        wall_seconds=measured.wall_seconds,
        rows_per_second=rows / measured.wall_seconds,
        cpu_seconds=measured.cpu_seconds,
        cpu_us_per_row=measured.cpu_seconds / rows * 1e6,
        peak_rss_mib=measured.peak_rss_mib,
        server_cpu_us_per_request=(
            None if server_cpu is None else server_cpu / max(requests, 1) * 1e6
        ),
    )


def read_outcomes(path: Path, rows: int, expected_status: int | None) -> Counter[str]:
    """Each results line's outcome: `ok` (expected status, no error) or what went wrong.

    Rows without a line count as `missing`; lines past `rows` as `extra`.
    """
    outcomes: Counter[str] = Counter()
    if path.is_file():
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                outcomes[_outcome(line, expected_status)] += 1
    lines = sum(outcomes.values())
    if lines < rows:
        outcomes["missing"] = rows - lines
    elif lines > rows:
        outcomes["extra"] = lines - rows
    return outcomes


def _outcome(line: str, expected_status: int | None) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return "unreadable line"
    error = record.get("error")
    if error is None and record.get("status") == expected_status:
        return "ok"
    if isinstance(error, dict) and error.get("kind") != "http":
        return str(error.get("kind"))
    return f"HTTP {record.get('status')}"


def _print_failure(run: CoordinatorRun, *outputs: Any) -> None:
    failures = {key: value for key, value in run.outcomes.items() if key != "ok"}
    print(f"  FAILED: exit code {run.exit_code}, outcomes {failures}", flush=True)
    for output in outputs:
        output.seek(0)
        text = output.read().decode(errors="replace")
        shown = [line.rpartition("\r")[2] for line in text.split("\n")]  # as a terminal shows
        for line in [line for line in shown if line.strip()][-FAILURE_LINES:]:
            print(f"    | {line}", flush=True)


# ---------------------------------------------------------------- the parts


def measure_startup(workdir: Path) -> CoordinatorRun:
    dataset = workdir / "one-row.jsonl"
    dataset_file.write_jsonl(dataset, 1)
    run = run_coordinator(workdir, dataset, 1, dry_run=True)
    dataset.unlink()
    print(
        f"start-up: 1-row dry run {run.wall_seconds:.2f} s, peak RSS {run.peak_rss_mib:.1f} MiB",
        flush=True,
    )
    return run


def measure_rate(
    args: argparse.Namespace, wrk_path: str, api_key: str, workdir: Path
) -> RateSummary:
    dataset = workdir / "rate.jsonl"
    size = dataset_file.write_jsonl(dataset, args.rows)
    print(f"\nRate: dataset of {args.rows:,} rows ({size / MIB:.1f} MiB)", flush=True)
    (port,) = free_ports(1)
    with serving(noop_server(api_key, args.connections), port, workdir) as running:
        script = wrk.write_script(running.server, workdir)
        print(f"warm-up: wrk {throughput.WARMUP_SECONDS} s", flush=True)
        wrk.run_wrk(wrk_path, running, script, throughput.WARMUP_SECONDS, args.connections)
        runs: list[CoordinatorRun] = []
        loads: list[WrkRun] = []
        for number in range(1, args.rounds + 1):
            runs.append(
                run_coordinator(
                    workdir,
                    dataset,
                    args.rows,
                    url=running.url,
                    api_key=api_key,
                    concurrency=args.connections,
                    server=running,
                )
            )
            print(f"round {number}/{args.rounds} {_coordinator_line(runs[-1])}", flush=True)
            seconds = min(max(WRK_SECONDS[0], round(runs[-1].wall_seconds)), WRK_SECONDS[1])
            cpu_before = server_cpu_seconds(running)
            result = wrk.run_wrk(wrk_path, running, script, seconds, args.connections)
            server_cpu = server_cpu_seconds(running) - cpu_before
            loads.append(WrkRun(seconds, result, server_cpu / max(result.requests, 1) * 1e6))
            print(f"round {number}/{args.rounds} {_wrk_line(loads[-1])}", flush=True)
    dataset.unlink()
    coordinator_rate = statistics.median(r.rows_per_second for r in runs)
    wrk_rate = statistics.median(w.result.requests_per_second for w in loads)
    ratio = coordinator_rate / wrk_rate
    return RateSummary(
        rows=args.rows,
        connections=args.connections,
        coordinator_rows_per_second=coordinator_rate,
        wrk_requests_per_second=wrk_rate,
        ratio=ratio,
        target=RATE_TARGET,
        met_target=ratio >= RATE_TARGET and all(r.succeeded for r in runs),
        coordinator_runs=runs,
        wrk_runs=loads,
    )


def _coordinator_line(run: CoordinatorRun) -> str:
    failed = "" if run.succeeded else f", {run.rows - run.ok:,} FAILED"
    server = run.server_cpu_us_per_request
    return (
        f"coordinator {run.rows:>9,} rows in {run.wall_seconds:6.2f} s {run.rows_per_second:>8,.0f}"
        f" rows/s  coordinator CPU {run.cpu_us_per_row:4.0f} us/row "
        f"({run.cpu_seconds / run.wall_seconds:.2f} cores)  "
        f"server CPU {server or 0:4.0f} us/req{failed}"
    )


def _wrk_line(load: WrkRun) -> str:
    result = load.result
    failed = f", {result.failed} FAILED" if result.failed else ""
    return (
        f"wrk         {result.requests:>9,} reqs in {load.seconds:3d}    s "
        f"{result.requests_per_second:>8,.0f} req/s   p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms       server CPU {load.server_cpu_us_per_request:4.0f} "
        f"us/req{failed}"
    )


def print_rate(summary: RateSummary) -> None:
    print(
        f"\nRate: {summary.rows:,} rows, {summary.connections} connections, "
        f"median of {len(summary.coordinator_runs)} rounds"
    )
    print(f"  coordinator {summary.coordinator_rows_per_second:>8,.0f} rows/s")
    print(f"  wrk         {summary.wrk_requests_per_second:>8,.0f} req/s")
    verdict = "PASS" if summary.met_target else "FAIL"
    print(f"  coordinator / wrk = {summary.ratio:.2f}  target >= {summary.target:g}  {verdict}")


def measure_memory(args: argparse.Namespace, workdir: Path) -> MemorySummary:
    print("\nMemory: coordinator run --dry-run, peak RSS from wait4(2)", flush=True)
    runs = []
    for rows in (args.baseline_rows, args.memory_rows):
        dataset = workdir / f"dry-{rows}.jsonl"
        size = dataset_file.write_jsonl(dataset, rows)
        print(f"  dataset of {rows:,} rows ({size / MIB:.1f} MiB) written", flush=True)
        runs.append(run_coordinator(workdir, dataset, rows, dry_run=True))
        dataset.unlink()
        print(f"  {_dry_line(runs[-1])}", flush=True)
    small, large = runs
    growth = large.peak_rss_mib - small.peak_rss_mib
    ratio = large.peak_rss_mib / small.peak_rss_mib
    met = ratio <= FLAT_RATIO and growth <= FLAT_SLACK_MIB and small.succeeded and large.succeeded
    return MemorySummary(small, large, growth, ratio, met)


def _dry_line(run: CoordinatorRun) -> str:
    failed = "" if run.succeeded else f", {run.rows - run.ok:,} FAILED"
    return (
        f"{run.rows:>9,} rows in {run.wall_seconds:6.2f} s {run.rows_per_second:>8,.0f} rows/s  "
        f"CPU {run.cpu_us_per_row:4.0f} us/row  peak RSS {run.peak_rss_mib:6.1f} MiB{failed}"
    )


def print_memory(summary: MemorySummary) -> None:
    verdict = "PASS" if summary.met_target else "FAIL"
    print(
        f"  {summary.large.rows:,} vs {summary.small.rows:,} rows: peak RSS "
        f"{summary.growth_mib:+.1f} MiB ({summary.ratio:.2f} x)  target <= +{FLAT_SLACK_MIB:g} "
        f"MiB and <= {FLAT_RATIO:g} x  {verdict}"
    )


# ---------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.coordinator",
        description="Rows/s of the coordinator vs wrk on a no-op endpoint; its memory on 1M rows.",
    )
    parser.add_argument("--rows", type=positive, default=20_000, help="rows per coordinator run")
    parser.add_argument(
        "--connections", type=positive, default=64, help="coordinator concurrency = wrk -c"
    )
    parser.add_argument("--rounds", type=at_least_2, default=2, help="rounds (>= 2)")
    parser.add_argument(
        "--memory-rows", type=positive, default=1_000_000, help="rows of the large dry run"
    )
    parser.add_argument(
        "--baseline-rows", type=positive, default=10_000, help="rows of the small dry run"
    )
    parser.add_argument("--only", choices=("rate", "memory"), help="run one part")
    args = parser.parse_args(argv)
    if args.memory_rows <= args.baseline_rows:
        parser.error("--memory-rows must be more than --baseline-rows")
    return args


def run(args: argparse.Namespace, wrk_path: str | None, document: dict[str, Any]) -> bool:
    """Run the selected parts, filling `document`; True when every row and request succeeded."""
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-coordinator-") as tmp:
        workdir = Path(tmp)  # cwd of the server and the coordinator: no .env file is read
        startup = measure_startup(workdir)
        document["startup"] = startup
        ok = startup.succeeded
        if args.only in (None, "rate") and wrk_path:
            rate = measure_rate(args, wrk_path, new_api_key(), workdir)
            print_rate(rate)
            document["rate"] = rate
            ok = ok and all(r.succeeded for r in rate.coordinator_runs)
            ok = ok and not any(w.result.failed for w in rate.wrk_runs)
        if args.only in (None, "memory"):
            memory = measure_memory(args, workdir)
            print_memory(memory)
            document["memory"] = memory
            ok = ok and memory.small.succeeded and memory.large.succeeded
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wrk_path = wrk.find_wrk()
    if args.only != "memory" and wrk_path is None:
        print(f"bench: {wrk.INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    if not COORDINATOR.is_file():
        print(f"bench: no {COORDINATOR}; run `make install` first", file=sys.stderr)
        return EXIT_USAGE
    raise_open_files_limit()
    started = datetime.now(UTC)
    document: dict[str, Any] = {
        "started_at": started.isoformat(),
        "settings": {
            **vars(args),
            "warmup_seconds": throughput.WARMUP_SECONDS,
            "wrk_seconds_bounds": WRK_SECONDS,
            "template": dataset_file.TEMPLATE,
            "rate_target": RATE_TARGET,
            "flat_ratio": FLAT_RATIO,
            "flat_slack_mib": FLAT_SLACK_MIB,
        },
        "machine": machine_facts(wrk_path),
    }
    return conclude(
        lambda: run(args, wrk_path, document),
        document,
        started,
        "coordinator",
        errors=(ServerError, wrk.WrkError, MeasuredError),
        stopped="servers and the coordinator",
    )


if __name__ == "__main__":
    sys.exit(main())
