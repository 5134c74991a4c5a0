"""Benchmark of POST /invoke: `python -m bench.invoke` (`make bench`), about 3 minutes on 2 cores.

What it measures
----------------
1. Throughput and latency against a baseline. The apps are served side by side on 127.0.0.1,
   each as one uvicorn process with identical settings (1 worker, uvloop, httptools, no access
   log):
   - `seed`: the "minimal Python agent endpoint" of Arize's docs (bench/seed_app.py), a bare
     FastAPI route with a no-op agent, no tracing: the baseline of every ratio;
   - `ours`: this service (`app.main:app`) with a no-op async agent (bench.agents:noop), API-key
     auth on, and every check of the request path (envelope, placeholders, input schema);
     tracing off (OTEL_TRACES_EXPORTER=none);
   - `ours-otlp`: the same, exporting its spans over OTLP/HTTP (batched) to a local receiver,
     bench/otlp_sink.py, run as a process of its own, on the default tracing pipeline, the
     SDK's (AGENT_TRACE_PIPELINE=sdk);
   - `ours-otlp-fast`: the same on the opt-in fast pipeline (AGENT_TRACE_PIPELINE=fast: the
     light request span, export from a child process);
   - `ours-otlp-down`, `ours-otlp-down-fast`: the same two, exporting to a closed port on
     127.0.0.1 (the collector down);
   - `seed-otel`, for reference when opentelemetry-instrumentation-fastapi is installed: the
     seed with the stock FastAPIInstrumentor, exporting to the same sink
     (bench/seed_otel_app.py).
   All get the same request (Arize's envelope with a realistic body and an `Authorization`
   header) from wrk, with one thread and `--connections` keep-alive connections, for
   `--duration` seconds each, in list order (seed, ours, ..., seed, ours, ...) for `--rounds`
   rounds after a short warm-up. The table shows the median per app of requests/s, p50 and p99
   latency, and each app's throughput relative to the first one (the seed); then the server
   process's CPU time per response (all its threads, span export included) and the seed's over
   it, a ratio that other work on the machine disturbs less than req/s. With a no-op agent
   the figures are the cost of the HTTP layer alone: a real agent takes seconds per row, so a
   ratio below 1 says how much CPU per request the service spends on its checks and spans, not
   how fast an experiment runs.
   Then the spans the sink received from each exporting app are set against the requests it
   answered (bench/tracing.py): about one or more per request shows the export really ran; an
   app that sent none gets a loud WARNING, since its row then measured no tracing at all. The
   sink shares the machine's cores with the servers and wrk; its CPU time is printed too.
2. Concurrency, the way Arize runs a dataset's rows in parallel: N requests at once over N
   connections (bench/burst.py), one server per scenario, tracing off. `first` and `last` are
   the seconds from the first write to the first and to the last complete response: `first`
   near 1 s is the agent's own second, and `last - first` is mostly the server's CPU work for
   the N requests done one after the other on its event loop. `peak RSS` is the server
   process's VmHWM (start-up included).
   - 1,000 requests to an async agent that awaits asyncio.sleep(1): target `last` <= 1.3 s.
   - 200 requests to a sync agent that blocks in time.sleep(1), with AGENT_SYNC_THREADS=256:
     target <= 1.5 s; and with 40 threads (the stock pool size) for comparison, where the
     requests queue for threads: about 200 / 40 = 5 s.
   Each line shows its target and PASS/FAIL; a missed target is reported, not fatal.

Exit status: 0 when every request got the expected 200 answer, 1 when any failed (or a server
did not start), 2 when wrk is missing or a flag is wrong; a missing span export is reported, not
fatal. All figures are also written as JSON to bench/results/invoke-<timestamp>.json.

To compare another variant, add a `Server` entry to `throughput_servers()` below (with
`tracing.otlp_env(...)` in its environment if it exports spans): every figure and ratio is
computed for each entry. Figures from one machine compare with each other only; rerun all sides
before concluding.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import platform
import resource
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import concurrency, throughput, tracing, wrk
from bench.concurrency import Burst
from bench.payload import BODY, EXPECTED, new_api_key, request_headers
from bench.report import at_least_2, conclude, positive
from bench.server import ROOT, Server, ServerError, uvicorn_command
from bench.tracing import NO_EXPORT_ENV, Sink, otlp_env

EXIT_NO_WRK = 2
BUSY_LOAD_PER_CPU = 0.5


# ---------------------------------------------------------------- what is compared


def our_server(name: str, api_key: str, entrypoint: str, **settings: str) -> Server:
    """This app serving `entrypoint`, with AGENT_<NAME>=value for each keyword; no tracing."""
    env = {
        "AGENT_ENTRYPOINT": entrypoint,
        "AGENT_API_KEYS": api_key,
        "AGENT_SHUTDOWN_GRACE_SECONDS": "5",
        **{f"AGENT_{key.upper()}": value for key, value in settings.items()},
        **NO_EXPORT_ENV,
    }
    return Server(
        name=name,
        argv=uvicorn_command("app.main:app"),
        env=env,
        path="/invoke",
        headers=request_headers(api_key),
        body=BODY,
        expected=EXPECTED,
    )


def with_env(server: Server, name: str, env: Mapping[str, str]) -> Server:
    """`server` renamed, with `env` added to (or overriding) its variables."""
    return replace(server, name=name, env={**server.env, **env})


def seed_server(name: str, app_spec: str, api_key: str, env: Mapping[str, str]) -> Server:
    return Server(
        name=name,
        argv=uvicorn_command(app_spec),
        env=env,
        path="/invoke",
        headers=request_headers(api_key),  # ignored by the seed; the same bytes for all
        body=BODY,
        expected=EXPECTED,
    )


def throughput_servers(api_key: str, sink: Sink) -> list[Server]:
    """The apps compared by wrk; the first is the baseline of the ratios."""
    ours = our_server("ours", api_key, "bench.agents:noop")
    fast = {"AGENT_TRACE_PIPELINE": "fast"}
    servers = [
        seed_server("seed", "bench.seed_app:app", api_key, {}),
        ours,
        with_env(ours, "ours-otlp", otlp_env("bench-ours-otlp", sink.endpoint)),
        with_env(ours, "ours-otlp-fast", {**otlp_env("bench-ours-fast", sink.endpoint), **fast}),
        with_env(ours, "ours-otlp-down", otlp_env("bench-ours-otlp-down", sink.down_endpoint)),
        with_env(
            ours,
            "ours-otlp-down-fast",
            {**otlp_env("bench-ours-down-fast", sink.down_endpoint), **fast},
        ),
    ]
    if importlib.util.find_spec("opentelemetry.instrumentation.fastapi") is not None:
        otel = otlp_env("bench-seed-otel", sink.endpoint)
        servers.append(seed_server("seed-otel", "bench.seed_otel_app:app", api_key, otel))
    return servers


def concurrency_bursts(api_key: str) -> list[Burst]:
    limits = {"max_concurrency": "2000", "timeout_seconds": "30"}
    return [
        Burst(
            "async sleep(1) x1000",
            our_server("ours-sleep", api_key, "bench.agents:sleep_1s", **limits),
            requests=1000,
            target_seconds=1.3,
        ),
        Burst(
            "sync sleep(1) x200, 256 threads",
            our_server(
                "ours-block", api_key, "bench.agents:block_1s", sync_threads="256", **limits
            ),
            requests=200,
            target_seconds=1.5,
        ),
        Burst(
            "sync sleep(1) x200, 40 threads",
            our_server(
                "ours-block-40", api_key, "bench.agents:block_1s", sync_threads="40", **limits
            ),
            requests=200,
            target_seconds=None,
            note="stock pool size, for comparison: expect ~5 s",
        ),
    ]


# ---------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.invoke",
        description="Throughput vs the seed app (wrk) and concurrency of POST /invoke.",
    )
    parser.add_argument("--duration", type=positive, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=positive, default=64, help="wrk connections")
    parser.add_argument("--rounds", type=at_least_2, default=2, help="rounds per app (>= 2)")
    parser.add_argument("--only", choices=("throughput", "concurrency"), help="run one part")
    return parser.parse_args(argv)


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit; the servers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def warn_if_busy() -> None:
    """Say so when the machine is already loaded: then every figure is lower and noisier."""
    load = os.getloadavg()[0]
    if load > BUSY_LOAD_PER_CPU * (os.cpu_count() or 1):
        print(
            f"bench: the machine is busy before the run (load average {load:.1f} over 1 min): "
            "the figures will be low and noisy; rerun on an idle machine",
            file=sys.stderr,
        )


def machine_facts(wrk_path: str | None) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": _first_line([wrk_path, "--version"]) if wrk_path else None,
        "commit": _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "load_average_1min": os.getloadavg()[0],  # before the run: other work skews it all
    }


def _first_line(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None


def run(args: argparse.Namespace, wrk_path: str | None, document: dict[str, Any]) -> bool:
    """Run the selected parts, filling `document`; True when every request succeeded."""
    api_key = new_api_key()
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-invoke-") as tmp:
        workdir = Path(tmp)  # the servers' cwd: empty, so no .env file is read
        if args.only in (None, "throughput") and wrk_path:
            load = throughput.Load(args.duration, args.connections, args.rounds)
            with tracing.running_sink(workdir) as sink:
                servers = throughput_servers(api_key, sink)
                summaries = throughput.measure(wrk_path, servers, load, workdir)
                counts = sink.counts()  # the servers have stopped, flushing their spans
            spans = tracing.span_counts(servers, summaries, counts, sink)
            throughput.print_table(summaries, load, tracing.table_notes(spans))
            tracing.print_spans(spans, counts)
            document["throughput"] = summaries
            document["spans"] = tracing.as_json(spans, counts)
            ok = not any(s.failed for s in summaries)
        if args.only in (None, "concurrency"):
            concurrency.print_header()
            bursts = []
            for spec in concurrency_bursts(api_key):
                bursts.append(concurrency.measure(spec, workdir))
                concurrency.print_line(bursts[-1])
            document["concurrency"] = bursts
            ok = ok and all(b.ok == b.requests for b in bursts)
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wrk_path = wrk.find_wrk()
    if args.only != "concurrency" and wrk_path is None:
        print(f"bench: {wrk.INSTALL_HINT}", file=sys.stderr)
        return EXIT_NO_WRK
    raise_open_files_limit()
    warn_if_busy()
    started = datetime.now(UTC)
    document: dict[str, Any] = {
        "started_at": started.isoformat(),
        "settings": {**vars(args), "warmup_seconds": throughput.WARMUP_SECONDS},
        "machine": machine_facts(wrk_path),
    }
    return conclude(
        lambda: run(args, wrk_path, document),
        document,
        started,
        "invoke",
        errors=(ServerError, wrk.WrkError),
        stopped="servers",
    )


if __name__ == "__main__":
    sys.exit(main())
