"""Durable jobs (`AGENT_JOBS=redis`): real Redis, real `agent-endpoint worker` processes.

Every test starts its own Debian redis-server on 127.0.0.1 (append-only file on), workers as
child processes, and the coordinator's stand-in of Arize's log API as a live server; the API
runs in-process or, for the scale-out test, as two `agent-endpoint serve` processes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from fastapi import FastAPI

from app.job import Job, JobStatus
from app.job_broker import NAMESPACE
from app.main import create_app
from app.redis_jobs import redis_store
from coordinator.log_api import LogStore, create_log_api
from tests.conftest import AUTH, KEY, METADATA, client_for, make_settings
from tests.live import live_server
from tests.otlp_receiver import OtlpReceiver
from tests.patience import scaled
from tests.processes import ROOT, clean_env
from tests.redis_server import RedisServer
from tests.servers import served

LOG_API_KEY = "log-api-key-0123456789abcdef"
SPACE_KEY = "space-key-0123456789"
HEARTBEAT = "2"  # seconds: a killed worker's jobs move on quickly
READY_TIMEOUT = 30.0


@pytest.fixture
def log_api() -> Iterator[tuple[str, LogStore]]:
    store = LogStore(api_keys=frozenset({LOG_API_KEY}), space_keys=frozenset({SPACE_KEY}))
    with live_server(create_log_api(store)) as url:
        yield f"{url}/v1/log", store


def job_env(redis: RedisServer, log_url: str, **extra: str) -> dict[str, str]:
    """The settings API processes and workers share."""
    return {
        "AGENT_API_KEYS": KEY,
        "AGENT_ENTRYPOINT": "tests.agents:job",
        "AGENT_INPUT_SCHEMA_FILE": str(ROOT / "tests" / "open_schema.json"),
        "REDIS_URL": redis.url,
        "AGENT_JOB_HEARTBEAT_SECONDS": HEARTBEAT,
        "ARIZE_API_KEY": LOG_API_KEY,
        "ARIZE_SPACE_KEY": SPACE_KEY,
        "ARIZE_LOG_URL": log_url,
        "OTEL_TRACES_EXPORTER": "none",
        "AGENT_PUSH_BACKOFF_SECONDS": "0.05",
        **extra,
    }


def api_app(env: dict[str, str]) -> FastAPI:
    """The API in this process, with the settings the workers get from `env`."""
    return create_app(make_settings(**api_settings(env)))


def api_settings(env: dict[str, str]) -> dict[str, Any]:
    return {
        "entrypoint": env["AGENT_ENTRYPOINT"],
        "input_schema_file": env["AGENT_INPUT_SCHEMA_FILE"],
        "redis_url": env["REDIS_URL"],
        "job_heartbeat_seconds": float(env["AGENT_JOB_HEARTBEAT_SECONDS"]),
        "arize_api_key": LOG_API_KEY,
        "arize_space_key": SPACE_KEY,
        "arize_log_url": env["ARIZE_LOG_URL"],
        "traces_exporter": ["none"],
    }


@contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`agent-endpoint worker`, ready; stopped with SIGTERM at the end (if still alive)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=ROOT,
            env=clean_env(**env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + scaled(READY_TIMEOUT)
        while "worker ready" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(scaled(READY_TIMEOUT))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def body(goal: str, run_id: str, seconds: float = 0) -> dict[str, Any]:
    return {
        "input": {"goal": goal, "seconds": seconds},
        "arize_metadata": {**METADATA, "run_id": run_id},
    }


async def submit(client: httpx.AsyncClient, envelope: dict[str, Any]) -> str:
    """POST /invoke/async in-process; the status URL of the accepted job."""
    response = await client.post("/invoke/async", json=envelope, headers=AUTH)
    assert response.status_code == 200, response.text
    status_url: str = response.json()["status_url"]
    return status_url


async def status_of(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url, headers=AUTH)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def wait_for(
    client: httpx.AsyncClient, url: str, statuses: set[str], limit: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + scaled(limit)
    while True:
        job = await status_of(client, url)
        pushed = job["push"]["status"] != "pending"
        if job["status"] in statuses and (job["status"] == "running" or pushed):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_a_worker_runs_the_job_and_pushes_its_result(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    url, store = log_api
    env = job_env(redis_server, url)
    async with client_for(api_app(env)) as client:
        response = await client.post("/invoke/async", json=body("Lisbon", "run-1"), headers=AUTH)
        assert response.status_code == 200, response.text
        status_url = response.json()["status_url"]
        assert (await status_of(client, status_url))["status"] == "queued"  # no worker yet
        with worker(env, tmp_path / "worker.log"):
            done = await wait_for(client, status_url, {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    assert done["result"] == {"done": "Lisbon", "run_id": "run-1"}
    assert done["attempts"] == 1
    assert done["push"]["status"] == "pushed"
    assert store.answers == [200]
    (record,) = store.by_prediction_id("run-1")
    assert record["prediction"]["tags"]["job_id"] == {"string": done["job_id"]}


@pytest.mark.anyio
async def test_a_job_of_a_killed_worker_completes_on_another_and_is_pushed_once(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    url, store = log_api
    env = job_env(redis_server, url)
    async with client_for(api_app(env)) as client:
        status_url = await submit(client, body("Oslo", "run-kill", seconds=3))
        with worker(env, tmp_path / "first.log") as first:
            await wait_for(client, status_url, {"running"})
            first.kill()  # SIGKILL mid-job: no cleanup, no acknowledgement
            first.wait()
        killed_at = time.monotonic()
        with worker(env, tmp_path / "second.log"):
            done = await wait_for(client, status_url, {"succeeded", "failed"})
        recovered_in = time.monotonic() - killed_at
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2  # the killed run, then the one that finished
    assert store.answers == [200]  # exactly one push
    assert len(store.by_prediction_id("run-kill")) == 1
    assert recovered_in < scaled(30)


@pytest.mark.anyio
async def test_queued_jobs_survive_a_redis_restart(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    url, store = log_api
    env = job_env(redis_server, url)
    async with client_for(api_app(env)) as client:
        urls = []
        for n in range(5):
            response = await client.post(
                "/invoke/async", json=body(f"city {n}", f"run-{n}"), headers=AUTH
            )
            assert response.status_code == 200, response.text
            urls.append(response.json()["status_url"])
    redis_server.restart()  # SIGTERM, then a new server on the same append-only file
    async with client_for(api_app(env)) as client:
        with worker(env, tmp_path / "worker.log"):
            done = [await wait_for(client, u, {"succeeded", "failed"}) for u in urls]
    assert [job["status"] for job in done] == ["succeeded"] * 5
    assert sorted(record["prediction_id"] for record in store.records) == [
        f"run-{n}" for n in range(5)
    ]


@pytest.mark.anyio
async def test_two_api_processes_and_two_workers_lose_and_double_nothing(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    url, store = log_api
    env = job_env(redis_server, url, AGENT_JOB_CONCURRENCY="16")
    count = 500
    with ExitStack() as stack:
        apis = [stack.enter_context(served(tmp_path / f"api{n}.log", **env)) for n in (1, 2)]
        for n in (1, 2):
            stack.enter_context(worker(env, tmp_path / f"worker{n}.log"))
        # As many submissions in flight as the pool has connections: none waits for one (a
        # wait the pool would time out on a busy machine); each answer gets a bound that scales.
        connections = 64
        in_flight = asyncio.Semaphore(connections)
        limits = httpx.Limits(max_connections=connections)
        timeout = httpx.Timeout(scaled(30), pool=None)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

            async def submit(n: int) -> str:
                # As Arize does, a row whose connection broke is sent again: a keep-alive
                # connection the server closed as idle just as the client reused it (a race a
                # busy machine makes likely) breaks without an answer. The run id makes the
                # retry safe: the same job comes back, never a second one (checked below).
                for attempt in range(3):
                    try:
                        async with in_flight:
                            response = await client.post(
                                f"{apis[n % 2]}/invoke/async",
                                json=body(f"row {n}", f"run-{n}"),
                                headers=AUTH,
                            )
                        break
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        if attempt == 2:
                            raise
                assert response.status_code == 200, response.text
                status_url: str = response.json()["status_url"]
                return status_url

            # A task group: if one submission fails, the others are cancelled and their
            # connections closed with the client, not left to a later test's collection.
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(submit(n)) for n in range(count)]
            urls = [task.result() for task in tasks]
            # Read each status from the other API process: they share Redis.
            done = [
                await wait_for(client, u.replace(apis[n % 2], apis[(n + 1) % 2]), {"succeeded"})
                for n, u in enumerate(urls)
            ]
    assert len({job["job_id"] for job in done}) == count
    assert all(job["push"]["status"] == "pushed" for job in done)
    assert store.answers == [200] * count  # none lost, none pushed twice
    assert sorted(r["prediction_id"] for r in store.records) == sorted(
        f"run-{n}" for n in range(count)
    )


@pytest.mark.anyio
async def test_redis_down_gives_503_and_the_server_keeps_serving(
    redis_server: RedisServer, log_api: tuple[str, LogStore]
) -> None:
    url, _ = log_api
    env = job_env(redis_server, url)
    async with client_for(api_app(env)) as client:
        accepted = await client.post("/invoke/async", json=body("Rome", "run-a"), headers=AUTH)
        redis_server.stop()
        refused = await client.post("/invoke/async", json=body("Rome", "run-b"), headers=AUTH)
        status = await client.get(accepted.json()["status_url"], headers=AUTH)
        sync = await client.post("/invoke", json=body("Rome", "run-c"), headers=AUTH)
    assert accepted.status_code == 200
    for answer in (refused, status):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["error"]["type"] == "job_store_unavailable"
        assert redis_server.url not in answer.text
    assert sync.status_code == 200  # the sync route does not need Redis


@pytest.mark.anyio
async def test_the_jobs_spans_continue_the_request_trace_in_the_same_space(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    """API and worker as processes, both exporting to Arize (here: a live OTLP receiver)."""
    url, _ = log_api
    receiver = OtlpReceiver()
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with live_server(receiver.app) as collector:
        env = job_env(
            redis_server,
            url,
            OTEL_TRACES_EXPORTER="arize",
            ARIZE_SPACE_ALLOWLIST="*",
            ARIZE_COLLECTOR_ENDPOINT=collector,
            AGENT_ARIZE_TRANSPORT="http",
            # The export process at the processes' own priority: niced, on cores busy with
            # other work, it may not flush within its stop timeout, and the spans are lost.
            AGENT_EXPORT_NICE="0",
        )
        with (
            served(tmp_path / "api.log", **env) as api,
            worker(env, tmp_path / "worker.log"),
        ):
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{api}/invoke/async",
                    json=body("Kyoto", "run-trace"),
                    headers={**AUTH, "traceparent": f"00-{trace_id}-{caller_span}-01"},
                )
                await wait_for(client, response.json()["status_url"], {"succeeded"})
        spans = receiver.spans()  # both processes flushed their spans when they stopped
    submission = next(s for s in spans if s.name.endswith("(async)"))
    job = next(s for s in spans if s.name == "tests.agents:job")
    assert submission.trace_id == job.trace_id == trace_id
    assert submission.parent_id == caller_span
    assert job.parent_id == submission.span_id
    for span in (submission, job):
        assert span.headers["arize-space-id"] == METADATA["space_id"]
        assert span.attributes["arize.space_id"] == METADATA["space_id"]
        assert json.loads(span.attributes["metadata"])["run_id"] == "run-trace"


@pytest.mark.anyio
async def test_sigterm_lets_the_running_job_finish(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    url, store = log_api
    env = job_env(redis_server, url, AGENT_JOB_GRACE_SECONDS="20")
    async with client_for(api_app(env)) as client:
        status_url = await submit(client, body("Nara", "run-term", seconds=1.5))
        with worker(env, tmp_path / "worker.log") as running:
            await wait_for(client, status_url, {"running"})
            running.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(running.wait, scaled(READY_TIMEOUT))
        done = await status_of(client, status_url)
    log = (tmp_path / "worker.log").read_text()
    assert code == 0
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1  # finished by the stopping worker, not run again
    assert store.answers == [200]
    assert "worker stopped" in log
    assert "Unclosed" not in log  # the pusher's session and the Redis connections closed


@pytest.mark.anyio
async def test_a_queued_and_a_running_job_are_cancelled_across_processes(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    """The API cancels; the worker process notices, sets ctx.cancelled, pushes once."""
    url, store = log_api
    env = job_env(
        redis_server, url, AGENT_ENTRYPOINT="tests.agents:cancellable", AGENT_JOB_CONCURRENCY="1"
    )
    markers = {name: tmp_path / f"{name}.marker" for name in ("running", "queued")}
    async with client_for(api_app(env)) as client:
        with worker(env, tmp_path / "worker.log"):
            urls = {
                name: await submit(
                    client,
                    {**body(name, f"run-{name}"), "input": {"goal": name, "marker": str(marker)}},
                )
                for name, marker in markers.items()
            }
            await wait_for(client, urls["running"], {"running"})
            answers = {
                name: await client.delete(urls[name], headers=AUTH)
                for name in ("queued", "running")
            }
            done = {name: await wait_for(client, u, {"cancelled"}) for name, u in urls.items()}
            # A job after them, on the one slot: done means the queued job's message was taken.
            after = await wait_for(
                client, await submit(client, body("after", "run-after")), {"succeeded"}
            )
        again = await client.delete(urls["running"], headers=AUTH)
    for name, answer in answers.items():
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        assert done[name]["error"]["type"] == "cancelled"
        assert done[name]["push"]["status"] == "pushed"
    assert markers["running"].read_text() == "started\ncancelled\n"  # saw ctx.cancelled
    assert not markers["queued"].exists()  # never started
    assert done["queued"]["attempts"] == 0
    assert after["status"] == "succeeded"
    assert sorted(store.answers) == [200, 200, 200]  # one push per job, none again
    for name in ("running", "queued"):
        (record,) = store.by_prediction_id(f"run-{name}")
        assert record["prediction"]["label"]["score_categorical"]["score_category"] == {
            "category": "cancelled",
            "score": 0.0,
        }
    assert again.status_code == 409


OUTAGE_SECONDS = 10.0  # the scenario: Redis away this long while jobs run


async def wait_all_pushed(
    client: httpx.AsyncClient, urls: list[str], limit: float
) -> list[dict[str, Any]]:
    """Every job finished and its push settled; 503s (Redis coming back) are waited through.

    The assertion on the deadline lists the jobs still open, with their status and push."""
    deadline = time.monotonic() + scaled(limit)
    done: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}  # the last status and push seen of each job still open
    while True:
        for url in urls:
            if url in done:
                continue
            response = await client.get(url, headers=AUTH)
            if response.status_code == 503:
                seen[url] = "503"
                continue
            assert response.status_code == 200, response.text
            job = response.json()
            seen[url] = f"{job['status']}/push {job['push']['status']}"
            if job["status"] in {"succeeded", "failed", "cancelled"} and (
                job["push"]["status"] != "pending"
            ):
                done[url] = job
        if len(done) == len(urls):
            return [done[url] for url in urls]
        still = {url.rsplit("/", 1)[-1]: seen[url] for url in urls if url not in done}
        assert time.monotonic() < deadline, f"{len(still)} of {len(urls)} jobs open: {still}"
        await asyncio.sleep(0.2)


async def wait_running(client: httpx.AsyncClient, urls: list[str], limit: float) -> None:
    deadline = time.monotonic() + scaled(limit)
    while True:
        statuses = [(await status_of(client, url))["status"] for url in urls]
        if all(status == "running" for status in statuses):
            return
        assert time.monotonic() < deadline, f"not all running: {statuses}"
        await asyncio.sleep(0.05)


def assert_pushed_once(store: LogStore, run_ids: list[str]) -> None:
    pushed = sorted(str(record["prediction_id"]) for record in store.records)
    missing = sorted(set(run_ids) - set(pushed))
    doubled = sorted({run_id for run_id in pushed if pushed.count(run_id) > 1})
    assert (missing, doubled) == ([], []), (
        f"{len(missing)} of {len(run_ids)} never pushed, {len(doubled)} pushed twice"
    )
    assert store.answers == [200] * len(run_ids)


@pytest.mark.anyio
async def test_jobs_running_through_a_redis_outage_finish_and_are_pushed_once(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    """Redis stops for 10 s under two live workers: jobs whose agent ends during the outage
    and jobs that end after it all finish and are pushed, once each."""
    url, store = log_api
    env = job_env(redis_server, url, AGENT_JOB_CONCURRENCY="4")
    durations = [2, 2, 3, 3, 14, 16]  # four end while Redis is away, two after it is back
    run_ids = [f"run-out-{n}" for n in range(len(durations))]
    with ExitStack() as stack:
        for n in (1, 2):
            stack.enter_context(worker(env, tmp_path / f"worker{n}.log"))
        async with client_for(api_app(env)) as client:
            urls = [
                await submit(client, body(f"city {n}", run_id, seconds=seconds))
                for n, (run_id, seconds) in enumerate(zip(run_ids, durations, strict=True))
            ]
            await wait_running(client, urls, READY_TIMEOUT)
            redis_server.stop()
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a result
            redis_server.start()  # same port, same append-only file
            done = await wait_all_pushed(client, urls, limit=90)
    assert [job["status"] for job in done] == ["succeeded"] * len(durations)
    assert_pushed_once(store, run_ids)


@pytest.mark.anyio
async def test_jobs_survive_redis_restarts_under_two_live_workers(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    """80 short jobs; Redis restarts twice while the workers take and finish them."""
    url, store = log_api
    env = job_env(redis_server, url, AGENT_JOB_CONCURRENCY="8")
    count = 80
    run_ids = [f"run-re-{n}" for n in range(count)]
    with ExitStack() as stack:
        for n in (1, 2):
            stack.enter_context(worker(env, tmp_path / f"worker{n}.log"))
        async with client_for(api_app(env)) as client:
            urls = [
                await submit(client, body(f"row {n}", run_id, seconds=0.3 + (n % 7) * 0.2))
                for n, run_id in enumerate(run_ids)
            ]
            for _ in range(2):
                await wait_some_running(client, urls)
                redis_server.restart()
            done = await wait_all_pushed(client, urls, limit=120)
    assert [job["status"] for job in done] == ["succeeded"] * count
    assert_pushed_once(store, run_ids)


async def wait_some_running(client: httpx.AsyncClient, urls: list[str]) -> None:
    """Until a job is running: the restart that follows hits live runs."""
    deadline = time.monotonic() + scaled(READY_TIMEOUT)
    while True:
        for url in urls:
            response = await client.get(url, headers=AUTH)
            if response.status_code == 200 and response.json()["status"] == "running":
                return
        assert time.monotonic() < deadline, "no job ever ran"


@pytest.mark.anyio
async def test_the_sweep_finishes_jobs_left_running_with_no_message(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    """Two jobs whose run is gone and whose message is gone too (as after a dead-lettering):
    one left running, one left with its result recorded but not pushed. The workers' sweep
    runs the first again and only pushes the second."""
    url, store = log_api
    env = job_env(redis_server, url)
    async with client_for(api_app(env)) as client:
        left_url = await submit(client, body("Quito", "run-left"))
        recorded_url = await submit(client, body("Lima", "run-recorded"))
    jobs = redis_store(make_settings(**api_settings(env)))
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await raw.delete(f"{NAMESPACE}:queue:agent-jobs", f"{NAMESPACE}:queue:agent-jobs.msgs")
        for status_url, change in ((left_url, left_running), (recorded_url, left_recorded)):
            job_id = status_url.rsplit("/", 1)[-1]
            assert (await jobs.update(job_id, change)).changed
            assert await jobs.hold(job_id, "a-dead-run", 0.5)  # never renewed
    finally:
        await raw.aclose()
        await jobs.close()
    async with client_for(api_app(env)) as client:
        with worker(env, tmp_path / "worker.log"):
            left, recorded = await wait_all_pushed(client, [left_url, recorded_url], limit=60)
    assert left["status"] == "succeeded"
    assert left["attempts"] == 2  # the lost run, then the sweep's
    assert recorded["result"] == "recorded before the run was lost"
    assert recorded["attempts"] == 1  # pushed, not run again
    assert_pushed_once(store, ["run-left", "run-recorded"])
    assert (tmp_path / "worker.log").read_text().count("queued again") == 2


def left_running(job: Job) -> Job:
    job.status, job.started_at, job.attempts = JobStatus.RUNNING, job.submitted_at, 1
    return job


def left_recorded(job: Job) -> Job:
    left_running(job)
    job.status, job.result, job.finished_at = (
        JobStatus.SUCCEEDED,
        "recorded before the run was lost",
        job.submitted_at,
    )
    return job
