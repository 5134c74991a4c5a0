"""The embedded job store's memory: RSS of a server process after many large job results.

    python -m bench.job_store_memory [--jobs 400] [--result-bytes 1000000]

Each case runs in a process of its own: the real app (`AGENT_JOBS=local`) in-process behind
httpx's ASGI transport, an agent that answers `--result-bytes` of JSON string, `--jobs` jobs
submitted and waited for one after the other; then a full collection and the process's
VmRSS. Cases: the defaults (AGENT_JOB_STORE_MAX_BYTES 64 MiB, AGENT_JOB_STORE_MAX_JOBS
10,000), and no bound at all (what the store did before it had one).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

UNBOUNDED = 10**15
CASES = {"defaults": {}, "unbounded": {"job_store_max_bytes": UNBOUNDED}}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


async def measure(case: str, jobs: int, result_bytes: int) -> dict[str, Any]:
    from app.main import create_app  # noqa: PLC0415 - the child process only
    from tests.conftest import AUTH, client_for, envelope, make_settings  # noqa: PLC0415

    async def large(input: dict[str, Any], ctx: Any) -> str:  # noqa: A002
        return "x" * result_bytes

    app = create_app(make_settings(**CASES[case]), agent=large)
    async with client_for(app) as client:
        gc.collect()
        before = rss_mib()
        for _ in range(jobs):
            response = await client.post("/invoke/async", json=envelope(), headers=AUTH)
            url = response.json()["status_url"]
            # Polled as a caller would: the status route is the store's reader too.
            while (await client.get(url, headers=AUTH)).json()["status"] != "succeeded":  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        gc.collect()
        after = rss_mib()
        last = (await client.get(url, headers=AUTH)).json()
        kept = app.state.jobs.jobs.store.kept_bytes
    return {
        "case": case,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "kept_result_mib": round(kept / 2**20, 1),
        "last_job_result_kept": last["result"] is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--result-bytes", type=int, default=1_000_000)
    parser.add_argument("--case", choices=sorted(CASES))
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(asyncio.run(measure(args.case, args.jobs, args.result_bytes))))
        return
    for case in CASES:
        command = [sys.executable, "-m", "bench.job_store_memory", "--case", case]
        command += ["--jobs", str(args.jobs), "--result-bytes", str(args.result_bytes)]
        print(subprocess.run(command, check=True, capture_output=True, text=True).stdout, end="")


if __name__ == "__main__":
    main()
