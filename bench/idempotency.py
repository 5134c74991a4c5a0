"""Retried rows run once: what a replay costs against a run, and what the memory store holds.

    python -m bench.idempotency [--requests 3000] [--rounds 5] [--entries 100000]

1. Latency, in this process: the app with a no-op agent, called through httpx's ASGI
   transport (no sockets: the figures are the service's own work), sequentially. Rounds
   alternate four kinds of request: no key (the path without idempotency), a new run id each
   time (a first run: claim, run, keep the answer), the same run id again (a replay of the
   kept answer), and idempotency off. The ratio is replay over first run, each round's own,
   then their median.
2. Memory, in a fresh child process per case: `MemoryAnswers` filled with `--entries` answers
   of a given body size; the RSS growth against the bytes the store accounts for. Once with
   room for every entry (the real cost of an entry, against ENTRY_OVERHEAD's estimate), once
   with 4 KiB answers under the default 64 MiB cap (the bound holding).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from app.context import AgentContext
from app.idempotency import ENTRY_OVERHEAD, Answer, MemoryAnswers
from app.main import create_app
from app.settings import Settings

KEY = "bench-key-0123456789abcdefghij"
HEADERS = {"Authorization": f"Bearer {KEY}"}
METADATA = {
    "dataset_id": "RGF0YXNldDox",
    "experiment_id": "RXhwZXJpbWVudDox",
    "example_id": "RGF0YXNldEV4YW1wbGU6MQ==",
    "space_id": "U3BhY2U6MQ==",
}
SCHEMA = Path(__file__).parent.parent / "tests" / "open_schema.json"


async def noop(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    return {"final_response": "ok", "goal": input.get("goal")}


def settings(*, idempotency: bool) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        api_keys=[KEY],  # type: ignore[list-item]
        traces_exporter=["none"],
        export_process=False,
        jobs="off",
        input_schema_file=SCHEMA,
        idempotency=idempotency,
        idempotency_max_entries=1_000_000,
    )


def body(run_id: str | None) -> dict[str, Any]:
    document: dict[str, Any] = {"input": {"goal": "Plan a 3-day trip to Tokyo", "days": 3}}
    if run_id is not None:
        document["arize_metadata"] = {**METADATA, "run_id": run_id}
    return document


async def timed(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> list[float]:
    """Per-request seconds, sequential; every answer must be a 200."""
    times = []
    for document in bodies:
        started = time.perf_counter()
        response = await client.post("/invoke", json=document, headers=HEADERS)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"unexpected answer {response.status_code}: {response.text}")
    return times


async def latency(requests: int, rounds: int) -> dict[str, Any]:
    on, off = create_app(settings(idempotency=True)), create_app(settings(idempotency=False))
    results: dict[str, list[float]] = {"no key": [], "first run": [], "replay": [], "off": []}
    ratios = []
    async with on.router.lifespan_context(on), off.router.lifespan_context(off):
        on_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=on), base_url="http://b")
        off_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=off), base_url="http://b")
        async with on_client, off_client:
            await timed(on_client, [body("warm")] * 200)  # the first run, then replays
            await timed(off_client, [body(f"warm-{n}") for n in range(200)])
            for round_ in range(rounds):
                kinds = {
                    "no key": (on_client, [body(None)] * requests),
                    "first run": (on_client, [body(f"r{round_}-{n}") for n in range(requests)]),
                    "replay": (on_client, [body("warm")] * requests),
                    "off": (off_client, [body(f"r{round_}-{n}") for n in range(requests)]),
                }
                medians = {}
                for kind, (client, bodies) in kinds.items():
                    times = await timed(client, bodies)
                    results[kind].extend(times)
                    medians[kind] = statistics.median(times)
                ratios.append(medians["replay"] / medians["first run"])
    figures: dict[str, Any] = {
        kind: {
            "p50_us": round(statistics.median(times) * 1e6),
            "p99_us": round(statistics.quantiles(times, n=100)[98] * 1e6),
        }
        for kind, times in results.items()
    }
    figures["replay_over_first_run"] = {
        "median": round(statistics.median(ratios), 3),
        "range": [round(min(ratios), 3), round(max(ratios), 3)],
    }
    return figures


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def fill(entries: int, body_size: int, max_bytes: int) -> dict[str, Any]:
    """In a child process: RSS growth of a store filled with `entries` answers."""
    store = MemoryAnswers(86_400, max_entries=entries, max_bytes=max_bytes)
    headers = (("content-type", "application/json"),)
    gc.collect()
    before = rss_bytes()

    async def run() -> None:
        for n in range(entries):
            key = f"sync run_id RXhwZXJpbWVudFJ1bjo{n:08d}"
            payload = (b"%08d" % n) * (body_size // 8)
            await store.finish(key, "token", Answer(200, headers, payload, f"{n:064x}"))

    asyncio.run(run())
    gc.collect()
    grown = rss_bytes() - before
    return {
        "entries_offered": entries,
        "body_bytes": body_size,
        "max_bytes": max_bytes,
        "entries_kept": len(store),
        "accounted_bytes": store.bytes,
        "rss_growth_bytes": grown,
        "rss_per_entry": round(grown / max(1, len(store))),
        "accounted_per_entry": round(store.bytes / max(1, len(store))),
    }


def memory(entries: int) -> list[dict[str, Any]]:
    cases = [(entries, 256, 10**12), (entries, 4096, 67_108_864)]
    results = []
    for count, size, cap in cases:
        output = subprocess.run(
            [sys.executable, "-m", "bench.idempotency", "--fill", f"{count},{size},{cap}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
        results.append(json.loads(output))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--fill", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fill:
        count, size, cap = (int(part) for part in args.fill.split(","))
        print(json.dumps(fill(count, size, cap)))
        return
    report = {
        "latency": asyncio.run(latency(args.requests, args.rounds)),
        "memory": memory(args.entries),
        "entry_overhead_estimate": ENTRY_OVERHEAD,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
