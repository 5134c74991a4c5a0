"""Async jobs: how fast `POST /invoke/async` accepts, and how many jobs workers finish per second.

    python -m bench.jobs [--submissions 200] [--rounds 5] [--jobs 2000] [--workers 1,2,4]

Everything runs on 127.0.0.1: a Debian redis-server of its own (append-only file on, fsync
every second: Redis's durable default), the API as `uvicorn app.main:app` with the no-op agent
of `bench.agents`, and `agent-endpoint worker` processes. Results are not pushed
(`AGENT_PUSH=none`) and spans not exported, so the figures are the queue's and the service's.

1. Time to accept: `--submissions` POSTs at once on as many connections, `--rounds` times; the
   p50/p99 of the answer, for the embedded queue (`AGENT_JOBS=local`) and for Redis (with one
   worker draining the queue).
2. Throughput: `--jobs` jobs are queued through the API with no worker running; then 1, 2 or
   4 workers (each `AGENT_JOB_CONCURRENCY=16`) drain them, and the rate is the jobs over the
   time from the first job's start to the last one's end, as the job documents in Redis
   record them. Ratios are against one worker, in the same run. On a 2-core machine the
   workers, Redis and this process share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import redis

from bench.invoke import machine_facts, raise_open_files_limit, warn_if_busy
from bench.payload import BODY, EXPECTED, new_api_key, request_headers
from bench.report import conclude, positive
from bench.server import HOST, Server, ServerError, child_env, free_ports, serving, uvicorn_command
from tests.redis_server import RedisServer

WORKER_CONCURRENCY = 16
SUBMIT_CONNECTIONS = 64
READY_TIMEOUT = 60.0
DONE_TIMEOUT = 300.0
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Acceptance:
    mode: str
    submissions: int  # at once, per round
    rounds: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    accepted: int  # 200 (or 202) answers, of submissions x rounds


@dataclass(frozen=True)
class Throughput:
    workers: int
    jobs: int
    seconds: float
    jobs_per_second: float
    ratio: float  # over one worker's jobs per second, same run
    succeeded: int


def api_server(api_key: str, **env: str) -> Server:
    return Server(
        name=f"api-{env.get('AGENT_JOBS', 'redis')}",
        argv=uvicorn_command("app.main:app"),
        env={
            "AGENT_API_KEYS": api_key,
            "AGENT_ENTRYPOINT": "bench.agents:noop",
            "AGENT_PUSH": "none",
            "OTEL_TRACES_EXPORTER": "none",
            "AGENT_JOB_CONCURRENCY": str(WORKER_CONCURRENCY),
            **env,
        },
        path="/invoke",
        headers=request_headers(api_key),
        body=BODY,
        expected=EXPECTED,
    )


@contextmanager
def workers(count: int, env: dict[str, str], workdir: Path) -> Iterator[None]:
    """`count` ready `agent-endpoint worker` processes; SIGTERM at the end."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for n in range(count):
            log = workdir / f"worker-{count}-{n}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker"],
                    cwd=workdir,
                    env=child_env(env),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            processes.append((process, log))
        deadline = time.monotonic() + READY_TIMEOUT
        for process, log in processes:
            while "worker ready" not in log.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(f"a worker did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.05)
        yield
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            try:
                process.wait(READY_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()


async def submit_all(
    url: str, api_key: str, count: int, connections: int
) -> list[tuple[int, float, str]]:
    """POST `count` submissions, `connections` at a time: (status, seconds, job id) each."""
    headers = request_headers(api_key)
    limit = asyncio.Semaphore(connections)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> tuple[int, float, str]:
            async with limit:
                started = time.perf_counter()
                async with session.post(f"{url}/invoke/async", data=BODY, headers=headers) as r:
                    answer = await r.read()
                elapsed = time.perf_counter() - started
                job_id = json.loads(answer).get("job_id", "") if r.status in (200, 202) else ""
                return r.status, elapsed, job_id

        return await asyncio.gather(*(one() for _ in range(count)))


def measure_acceptance(
    mode: str, url: str, api_key: str, submissions: int, rounds: int
) -> Acceptance:
    asyncio.run(submit_all(url, api_key, submissions, submissions))  # warm-up round
    seconds: list[float] = []
    accepted = 0
    for _ in range(rounds):
        results = asyncio.run(submit_all(url, api_key, submissions, submissions))
        seconds += [elapsed for _, elapsed, _ in results]
        accepted += sum(status in (200, 202) for status, _, _ in results)
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return Acceptance(
        mode=mode,
        submissions=submissions,
        rounds=rounds,
        p50_ms=round(statistics.median(seconds) * 1000, 2),
        p99_ms=round(cuts[98] * 1000, 2),
        max_ms=round(max(seconds) * 1000, 2),
        accepted=accepted,
    )


def wait_succeeded(client: redis.Redis, job_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Poll the job documents until all succeeded (or the time is up); the succeeded ones."""
    keys = [f"agent-endpoint:job:{job_id}" for job_id in job_ids]
    deadline = time.monotonic() + DONE_TIMEOUT
    while True:
        documents = [json.loads(d) for d in client.mget(keys) if d is not None]
        done = [d for d in documents if d["status"] == "succeeded"]
        if len(done) == len(keys) or time.monotonic() > deadline:
            return done
        time.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class Deployment:
    """Where the throughput runs send jobs, and what their workers need."""

    url: str  # the Redis-mode API
    api_key: str
    env: dict[str, str]  # the workers' settings
    workdir: Path
    client: redis.Redis  # reads the job documents


def measure_throughput(count: int, jobs: int, at: Deployment) -> tuple[float, int]:
    """Jobs queued first, then `count` workers drain them: the seconds from the first job's
    start to the last one's end (the job documents' own times), and how many succeeded."""
    results = asyncio.run(submit_all(at.url, at.api_key, jobs, SUBMIT_CONNECTIONS))
    job_ids = [job_id for status, _, job_id in results if status == HTTPStatus.ACCEPTED]
    with workers(count, at.env, at.workdir):
        done = wait_succeeded(at.client, job_ids)
    if not done:
        return 0.0, 0
    started = min(datetime.fromisoformat(d["started_at"]) for d in done)
    finished = max(datetime.fromisoformat(d["finished_at"]) for d in done)
    return (finished - started).total_seconds(), len(done)


def run(args: argparse.Namespace, document: dict[str, Any]) -> bool:
    api_key = new_api_key()
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        raise ServerError("redis-server is not installed: apt-get install -y redis-server")
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        data = workdir / "redis"
        data.mkdir()
        server = RedisServer(redis_binary, data, fsync="everysec")
        server.start()
        stack.callback(server.stop)
        env = {**api_server(api_key).env, "REDIS_URL": server.url}
        redis_port, local_port = free_ports(2)
        redis_api = serving(api_server(api_key, REDIS_URL=server.url), redis_port, workdir)
        local_api = serving(api_server(api_key, AGENT_JOBS="local"), local_port, workdir)
        api = f"http://{HOST}:{stack.enter_context(redis_api).port}"
        local = f"http://{HOST}:{stack.enter_context(local_api).port}"
        client = redis.Redis.from_url(server.url)
        deployment = Deployment(api, api_key, env, workdir, client)
        print(f"Time to accept: {args.submissions} submissions at once, {args.rounds} rounds")
        acceptances = [measure_acceptance("local", local, api_key, args.submissions, args.rounds)]
        with workers(1, env, workdir):
            acceptances.append(
                measure_acceptance("redis", api, api_key, args.submissions, args.rounds)
            )
        for a in acceptances:
            print(
                f"  AGENT_JOBS={a.mode:<6} p50 {a.p50_ms:7.2f} ms  p99 {a.p99_ms:7.2f} ms  "
                f"max {a.max_ms:7.2f} ms  accepted: {a.accepted}/{a.submissions * a.rounds}"
            )
        print(f"\nThroughput: {args.jobs} no-op jobs, workers of {WORKER_CONCURRENCY} each")
        throughputs: list[Throughput] = []
        for count in args.workers:
            seconds, succeeded = measure_throughput(count, args.jobs, deployment)
            rate = succeeded / seconds if seconds else 0.0
            base = (throughputs[0].jobs_per_second if throughputs else rate) or 1.0
            throughputs.append(
                Throughput(
                    count,
                    args.jobs,
                    round(seconds, 2),
                    round(rate, 1),
                    round(rate / base, 2),
                    succeeded,
                )
            )
            t = throughputs[-1]
            print(
                f"  {t.workers} worker(s)  {t.jobs_per_second:8.1f} jobs/s  x{t.ratio:.2f}  "
                f"({t.succeeded}/{t.jobs} in {t.seconds:.2f} s)"
            )
        client.close()
        document["acceptance"] = acceptances
        document["throughput"] = throughputs
        total = args.submissions * args.rounds
        return all(a.accepted == total for a in acceptances) and all(
            t.succeeded == t.jobs for t in throughputs
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--submissions", type=positive, default=200)
    parser.add_argument("--rounds", type=positive, default=5)
    parser.add_argument("--jobs", type=positive, default=2000)
    parser.add_argument(
        "--workers",
        type=lambda text: [positive(part) for part in text.split(",")],
        default=[1, 2, 4],
        help="worker counts, comma-separated; the first is the baseline",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit()
    warn_if_busy()
    started = datetime.now(UTC)
    document: dict[str, Any] = {
        "started_at": started.isoformat(),
        "settings": vars(args),
        "machine": machine_facts(None),
    }
    return conclude(
        lambda: run(args, document),
        document,
        started,
        "jobs",
        errors=(ServerError, redis.RedisError, aiohttp.ClientError),
        stopped="servers and workers",
    )


if __name__ == "__main__":
    sys.exit(main())
