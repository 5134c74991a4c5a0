"""Retried rows run once across API replicas: two `agent-endpoint serve` processes, one Redis.

The agent (`tests.agents:counted`) counts its own runs in a file both processes append to,
and answers with a nonce of its own, so equal bodies mean one run.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.idempotency import Answer, Running, fingerprint_of
from app.main import create_app
from app.redis_idempotency import RedisAnswers
from coordinator.log_api import LogStore, create_log_api
from tests.conftest import AUTH, METADATA, client_for, make_settings
from tests.live import free_port, live_server
from tests.redis_server import RedisServer
from tests.servers import start_server, wait_ready
from tests.test_redis_jobs import LOG_API_KEY, SPACE_KEY, job_env, wait_for, worker

WAIT = 60.0
TIMEOUT = "3"  # AGENT_TIMEOUT_SECONDS of the replicas: a dead owner's claim lapses after 8 s


def env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "AGENT_ENTRYPOINT": "tests.agents:counted",
        "REDIS_URL": redis.url,
        "AGENT_PUSH": "none",
        "OTEL_TRACES_EXPORTER": "none",
        "AGENT_TIMEOUT_SECONDS": TIMEOUT,
        **extra,
    }


@contextmanager
def replica(log: Path, **variables: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`agent-endpoint serve`, ready: its URL and process (a test may kill it)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(port, log, **variables)
    try:
        wait_ready(url, process, log)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def row(count_file: Path, run_id: str | None, **input_: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"input": {"goal": "Porto", "count_file": str(count_file), **input_}}
    if run_id is not None:
        document["arize_metadata"] = {**METADATA, "run_id": run_id}
    return document


def runs(count_file: Path) -> int:
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


def replayed(response: httpx.Response) -> bool:
    value: str | None = response.headers.get("idempotent-replayed")
    return value == "true"


@pytest.mark.anyio
async def test_two_replicas_run_a_row_once_and_replay_it(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    variables = env(redis_server)
    with ExitStack() as stack:
        a, _ = stack.enter_context(replica(tmp_path / "a.log", **variables))
        b, _ = stack.enter_context(replica(tmp_path / "b.log", **variables))
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=WAIT) as client:
            # 50 duplicates at the same instant, half on each replica.
            counted = tmp_path / "same.txt"
            body = row(counted, "run-50", seconds=1)
            answers = await asyncio.gather(
                *(
                    client.post(f"{(a, b)[n % 2]}/invoke", json=body, headers=AUTH)
                    for n in range(50)
                )
            )
            assert {r.status_code for r in answers} == {200}, answers[0].text
            assert len({r.content for r in answers}) == 1
            assert sum(replayed(r) for r in answers) == 49
            assert runs(counted) == 1
            later = await client.post(f"{b}/invoke", json=body, headers=AUTH)
            assert (later.content, replayed(later)) == (answers[0].content, True)

            # A failure is not kept: the retry, on the other replica, runs again.
            flaky = tmp_path / "flaky.txt"
            failed = await client.post(
                f"{a}/invoke", json=row(flaky, "run-f", fail_first=True), headers=AUTH
            )
            retried = await client.post(
                f"{b}/invoke", json=row(flaky, "run-f", fail_first=True), headers=AUTH
            )
            assert (failed.status_code, retried.status_code) == (500, 200)
            assert not replayed(retried)
            assert runs(flaky) == 2

            # The same run id with another input, on the other replica: 409.
            other = await client.post(f"{a}/invoke", json=row(counted, "run-50"), headers=AUTH)
            assert other.status_code == 409
            assert "arize_metadata.run_id 'run-50'" in other.json()["error"]["message"]

            # Idempotency-Key alone, across replicas.
            keyed = tmp_path / "keyed.txt"
            key = {**AUTH, "Idempotency-Key": '"abc-123"'}
            first = await client.post(f"{a}/invoke", json=row(keyed, None), headers=key)
            second = await client.post(f"{b}/invoke", json=row(keyed, None), headers=key)
            assert (second.content, replayed(second)) == (first.content, True)
            assert runs(keyed) == 1


@pytest.mark.anyio
async def test_duplicates_waiting_on_another_replica_get_its_failure(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    variables = env(redis_server)
    counted = tmp_path / "count.txt"
    body = row(counted, "run-ff", seconds=1, fail_first=True)
    with (
        replica(tmp_path / "a.log", **variables) as (a, _),
        replica(tmp_path / "b.log", **variables) as (b, _),
    ):
        async with httpx.AsyncClient(timeout=WAIT) as client:
            answers = await asyncio.gather(
                *(
                    client.post(f"{(a, b)[n % 2]}/invoke", json=body, headers=AUTH)
                    for n in range(10)
                )
            )
    assert {r.status_code for r in answers} == {500}
    assert len({r.content for r in answers}) == 1
    assert runs(counted) == 1


@pytest.mark.anyio
async def test_a_dead_replicas_claim_lapses_and_the_row_runs_again(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    variables = env(redis_server)
    counted = tmp_path / "count.txt"
    body = row(counted, "run-dead", seconds=2)
    with (
        replica(tmp_path / "a.log", **variables) as (a, doomed),
        replica(tmp_path / "b.log", **variables) as (b, _),
    ):
        async with httpx.AsyncClient(timeout=WAIT) as client:
            first = asyncio.create_task(client.post(f"{a}/invoke", json=body, headers=AUTH))
            deadline = time.monotonic() + WAIT
            while runs(counted) == 0:  # the agent started on replica a
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            doomed.kill()  # SIGKILL mid-run: its claim stays in Redis until it lapses
            doomed.wait()
            with pytest.raises(httpx.TransportError):
                await first
            started = time.monotonic()
            retry = await client.post(f"{b}/invoke", json=body, headers=AUTH)
            waited = time.monotonic() - started
    assert retry.status_code == 200, retry.text
    assert not replayed(retry)
    assert runs(counted) == 2
    assert waited < 3 + 5 + 5 + 2 + 10  # the claim's lifetime, a margin, the run, slack


@pytest.mark.anyio
async def test_a_waiter_gives_up_with_a_503_naming_the_fix(redis_server: RedisServer) -> None:
    """A claim held by a run that neither ends nor lapses in time: the waiter stops waiting."""
    stuck = RedisAnswers(
        redis_server.url, retention_seconds=60, max_entries=10, max_bytes=10**6, hold_seconds=60
    )
    input_ = {"goal": "Porto"}
    assert await stuck.claim("sync run_id run-stuck", fingerprint_of(input_), "tok") is None
    settings = make_settings(
        redis_url=redis_server.url,
        timeout_seconds=0.5,
        push="none",
        traces_exporter=["none"],
        idempotency=True,
    )
    agent_runs = 0

    async def agent(input: dict[str, Any], ctx: object) -> dict[str, Any]:  # noqa: A002
        nonlocal agent_runs
        agent_runs += 1
        return {}

    try:
        async with client_for(create_app(settings, agent=agent)) as client:
            body = {"input": input_, "arize_metadata": {**METADATA, "run_id": "run-stuck"}}
            started = time.monotonic()
            answer = await client.post("/invoke", json=body, headers=AUTH)
            waited = time.monotonic() - started
    finally:
        await stuck.close()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    error = answer.json()["error"]
    assert error["type"] == "duplicate_still_running"
    assert "arize_metadata.run_id 'run-stuck'" in error["message"]
    assert "AGENT_TIMEOUT_SECONDS" in error["message"]
    assert 10 <= waited < 40  # 0.5 s limit + 5 s claim margin + 5 s wait margin
    assert agent_runs == 0


@pytest.fixture
def log_api() -> Iterator[tuple[str, LogStore]]:
    store = LogStore(api_keys=frozenset({LOG_API_KEY}), space_keys=frozenset({SPACE_KEY}))
    with live_server(create_log_api(store)) as url:
        yield f"{url}/v1/log", store


@pytest.mark.anyio
async def test_async_duplicates_on_two_replicas_make_one_job_and_one_push(
    redis_server: RedisServer, log_api: tuple[str, LogStore], tmp_path: Path
) -> None:
    url, store = log_api
    counted = tmp_path / "count.txt"
    variables = job_env(redis_server, url, AGENT_ENTRYPOINT="tests.agents:counted")
    body = row(counted, "run-async")
    with ExitStack() as stack:
        a, _ = stack.enter_context(replica(tmp_path / "a.log", **variables))
        b, _ = stack.enter_context(replica(tmp_path / "b.log", **variables))
        async with httpx.AsyncClient(timeout=WAIT) as client:
            answers = await asyncio.gather(
                *(
                    client.post(f"{(a, b)[n % 2]}/invoke/async", json=body, headers=AUTH)
                    for n in range(20)
                )
            )
            assert {r.status_code for r in answers} == {200}, answers[0].text
            assert len({r.content for r in answers}) == 1
            status_url = answers[0].json()["status_url"]
            stack.enter_context(worker(variables, tmp_path / "worker.log"))
            done = await wait_for(client, status_url, {"succeeded", "failed"})
            again = await client.post(f"{b}/invoke/async", json=body, headers=AUTH)
    assert done["status"] == "succeeded"
    assert (again.content, replayed(again)) == (answers[0].content, True)
    assert runs(counted) == 1
    assert store.answers == [200]  # one push
    assert len(store.by_prediction_id("run-async")) == 1


def kept(size: int, status: int = 200) -> Answer:
    return Answer(status, (("content-type", "application/json"),), b"x" * size, "fp")


@pytest.mark.anyio
async def test_the_redis_store_is_bounded_and_hands_failures_to_waiters_only(
    redis_server: RedisServer,
) -> None:
    store = RedisAnswers(
        redis_server.url, retention_seconds=60, max_entries=3, max_bytes=20_000, hold_seconds=60
    )
    try:
        for n in range(5):
            assert await store.claim(f"k{n}", "fp", f"t{n}") is None
            await store.finish(f"k{n}", f"t{n}", kept(100))
        assert await store.claim("k0", "fp", "again") is None  # evicted: the oldest first
        assert await store.claim("k4", "fp", "x") == kept(100)
        for n in range(5, 10):  # 5 x 5 kB > 20 kB: the bytes bound evicts too
            assert await store.claim(f"k{n}", "fp", f"t{n}") is None
            await store.finish(f"k{n}", f"t{n}", kept(5_000))
        assert await store.claim("k5", "fp", "x") is None
        assert await store.claim("k9", "fp", "x") == kept(5_000)
        # Too big, or a failure: not kept, but the waiters of that run get it.
        for key, answer in (("big", kept(30_000)), ("failed", kept(10, status=500))):
            assert await store.claim(key, "fp", "owner") is None
            waiter = await store.claim(key, "fp", "waiter")
            assert waiter == Running("owner", "fp")
            await store.finish(key, "owner", answer)
            assert await store.poll(key, waiter) == answer
            assert await store.claim(key, "fp", "retry") is None  # a retry runs again
    finally:
        await store.close()
