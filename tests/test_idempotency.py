"""Retried rows run once, in one process: a real server, an agent that counts its own runs."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.context import AgentContext
from app.idempotency import Answer, Idempotency, MemoryAnswers, fingerprint_of
from app.main import create_app
from tests.conftest import AUTH, METADATA, client_for, make_settings
from tests.live import live_server
from tests.processes import ROOT

WAIT = 30.0  # generous bound for conditions on a busy machine


class Counting:
    """The agent: counts its runs, can hold them until released, can fail its first run."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = threading.Event()
        self.release.set()

    async def run(self, input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
        self.runs += 1
        first = self.runs == 1
        await asyncio.to_thread(self.release.wait, WAIT)
        if input.get("fail_first") and first:
            raise RuntimeError("the first run fails")
        return {"goal": input.get("goal"), "nonce": secrets.token_hex(8)}


def row(run_id: str | None = "run-1", **input_: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"input": {"goal": "Lisbon", **input_}}
    if run_id is not None:
        document["arize_metadata"] = {**METADATA, "run_id": run_id}
    return document


@asynccontextmanager
async def serving(
    agent: Counting, **settings: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app behind a live uvicorn on 127.0.0.1, and a client for it."""
    open_schema = ROOT / "tests" / "open_schema.json"
    options = {"idempotency": True, "input_schema_file": open_schema, **settings}
    app = create_app(make_settings(**options), agent=agent.run)
    with live_server(app) as url:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=WAIT) as client:
            yield app, client


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def replayed(response: httpx.Response) -> bool:
    value: str | None = response.headers.get("idempotent-replayed")
    return value == "true"


@pytest.mark.anyio
async def test_fifty_concurrent_duplicates_run_the_agent_once() -> None:
    agent = Counting()
    agent.release.clear()
    async with serving(agent) as (app, client):
        idempotency: Idempotency = app.state.idempotency
        sent = [
            asyncio.create_task(client.post("/invoke", json=row("run-50"), headers=AUTH))
            for _ in range(50)
        ]
        await until(lambda: idempotency.waiting == 49, "49 duplicates waiting on the first")
        agent.release.set()
        answers = await asyncio.gather(*sent)
    assert agent.runs == 1
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert sum(replayed(a) for a in answers) == 49


@pytest.mark.anyio
async def test_a_success_is_replayed_byte_for_byte_and_marked() -> None:
    agent = Counting()
    async with serving(agent) as (_, client):
        first = await client.post("/invoke", json=row("run-replay"), headers=AUTH)
        again = await client.post("/invoke", json=row("run-replay"), headers=AUTH)
    assert agent.runs == 1
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert (replayed(first), replayed(again)) == (False, True)


@pytest.mark.anyio
async def test_a_failure_is_not_kept_so_a_retry_runs_again() -> None:
    agent = Counting()
    async with serving(agent) as (_, client):
        failed = await client.post("/invoke", json=row("run-f", fail_first=True), headers=AUTH)
        retried = await client.post("/invoke", json=row("run-f", fail_first=True), headers=AUTH)
        replay = await client.post("/invoke", json=row("run-f", fail_first=True), headers=AUTH)
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "agent_error"
    assert (retried.status_code, replayed(retried)) == (200, False)
    assert (replay.content, replayed(replay)) == (retried.content, True)
    assert agent.runs == 2


@pytest.mark.anyio
async def test_duplicates_waiting_on_a_failure_get_that_failure() -> None:
    agent = Counting()
    agent.release.clear()
    async with serving(agent) as (app, client):
        idempotency: Idempotency = app.state.idempotency
        body = row("run-ff", fail_first=True)
        sent = [
            asyncio.create_task(client.post("/invoke", json=body, headers=AUTH)) for _ in range(5)
        ]
        await until(lambda: idempotency.waiting == 4, "4 duplicates waiting")
        agent.release.set()
        answers = await asyncio.gather(*sent)
    assert agent.runs == 1
    assert {a.status_code for a in answers} == {500}
    assert len({a.content for a in answers}) == 1


@pytest.mark.anyio
async def test_the_same_key_with_another_input_is_a_409_naming_the_key() -> None:
    agent = Counting()
    async with serving(agent) as (_, client):
        await client.post("/invoke", json=row("run-409"), headers=AUTH)
        other = await client.post("/invoke", json=row("run-409", days=3), headers=AUTH)
        # The same input, keys reordered and spaced differently: the same run, replayed.
        raw = json.dumps(
            {"arize_metadata": {**METADATA, "run_id": "run-409"}, "input": {"goal": "Lisbon"}},
            indent=2,
        )
        headers = {**AUTH, "content-type": "application/json"}
        same = await client.post("/invoke", content=raw, headers=headers)
    assert other.status_code == 409
    error = other.json()["error"]
    assert error["type"] == "idempotency_key_reused"
    assert "arize_metadata.run_id 'run-409'" in error["message"]
    assert error["run_id"] == "run-409"
    assert (same.status_code, replayed(same)) == (200, True)
    assert agent.runs == 1


@pytest.mark.anyio
async def test_idempotency_key_works_without_metadata_and_wins_over_the_run_id() -> None:
    agent = Counting()
    async with serving(agent) as (_, client):
        key = {**AUTH, "Idempotency-Key": '"key-1"'}
        first = await client.post("/invoke", json=row(None), headers=key)
        bare = {**AUTH, "Idempotency-Key": "key-1"}  # the unquoted form many clients send
        again = await client.post("/invoke", json=row(None), headers=bare)
        assert agent.runs == 1
        assert (again.content, replayed(again)) == (first.content, True)
        # The header wins: one run id under two keys is two runs ...
        for name in ("key-a", "key-b"):
            answer = await client.post(
                "/invoke", json=row("run-h"), headers={**AUTH, "Idempotency-Key": name}
            )
            assert not replayed(answer)
        assert agent.runs == 3
        # ... and the run id of a request with a header is no key of its own.
        plain = await client.post("/invoke", json=row("run-h"), headers=AUTH)
        assert not replayed(plain)
        empty = await client.post(
            "/invoke", json=row(None), headers={**AUTH, "Idempotency-Key": '""'}
        )
    assert empty.status_code == 400
    assert empty.json()["error"]["type"] == "invalid_idempotency_key"


@pytest.mark.anyio
async def test_no_key_no_idempotency_and_it_can_be_switched_off() -> None:
    agent = Counting()
    async with serving(agent) as (_, client):
        for _ in range(2):
            assert not replayed(await client.post("/invoke", json=row(None), headers=AUTH))
    assert agent.runs == 2
    off = Counting()
    async with serving(off, idempotency=False) as (_, client):
        for _ in range(2):
            assert not replayed(await client.post("/invoke", json=row("run-off"), headers=AUTH))
    assert off.runs == 2


@pytest.mark.anyio
async def test_async_duplicates_get_the_same_job() -> None:
    agent = Counting()
    agent.release.clear()
    async with serving(agent) as (app, client):
        idempotency: Idempotency = app.state.idempotency
        sent = [
            asyncio.create_task(client.post("/invoke/async", json=row("run-a"), headers=AUTH))
            for _ in range(20)
        ]
        answers = await asyncio.gather(*sent)
        later = await client.post("/invoke/async", json=row("run-a"), headers=AUTH)
        # Keys are scoped per route: the sync route runs the same run id on its own.
        agent.release.set()
        sync = await client.post("/invoke", json=row("run-a"), headers=AUTH)
        job_url = answers[0].json()["status_url"]

        async def finished() -> dict[str, Any]:
            deadline = time.monotonic() + WAIT
            while True:
                job: dict[str, Any] = (await client.get(job_url, headers=AUTH)).json()
                if job["status"] == "succeeded":
                    return job
                assert time.monotonic() < deadline, job
                await asyncio.sleep(0.05)

        job = await finished()
        assert idempotency.waiting == 0
    assert {a.status_code for a in answers} == {
        200
    }  # the async route answers 200 (Arize counts nothing else as done)
    assert len({a.content for a in [*answers, later]}) == 1
    assert replayed(later)
    assert (sync.status_code, replayed(sync)) == (200, False)
    assert job["attempts"] == 1
    assert agent.runs == 2  # the job once, the sync route once


@pytest.mark.anyio
async def test_the_replay_is_marked_on_its_span(exported: InMemorySpanExporter) -> None:
    agent = Counting()
    settings = make_settings(idempotency=True)
    async with client_for(create_app(settings, agent=agent.run)) as client:
        await client.post("/invoke", json=row("run-span"), headers=AUTH)
        await client.post("/invoke", json=row("run-span"), headers=AUTH)
    first, replay = exported.get_finished_spans()
    assert first.attributes is not None
    assert replay.attributes is not None
    assert "idempotency.replayed" not in first.attributes
    assert replay.attributes["idempotency.replayed"] is True
    assert replay.attributes["idempotency.key"] == "arize_metadata.run_id 'run-span'"
    assert replay.attributes["output.value"] == first.attributes["output.value"]


def answer(size: int, status: int = 200) -> Answer:
    return Answer(status, (("content-type", "application/json"),), b"x" * size, "fp")


@pytest.mark.anyio
async def test_the_memory_store_is_bounded_in_entries_bytes_and_age() -> None:
    by_count = MemoryAnswers(retention_seconds=3600, max_entries=3, max_bytes=10**9)
    for n in range(5):
        await by_count.finish(f"k{n}", "t", answer(10))
    assert len(by_count) == 3
    assert await by_count.claim("k1", "fp", "t") is None  # the oldest went first
    assert await by_count.claim("k4", "fp", "t") == answer(10)

    by_bytes = MemoryAnswers(retention_seconds=3600, max_entries=100, max_bytes=5_000)
    for n in range(10):
        await by_bytes.finish(f"k{n}", "t", answer(1_000))
    assert by_bytes.bytes <= 5_000
    assert 0 < len(by_bytes) < 10
    await by_bytes.finish("huge", "t", answer(6_000))  # bigger than the cap: simply not kept
    assert await by_bytes.claim("huge", "fp", "t") is None
    await by_bytes.finish("failed", "t", answer(10, status=500))  # failures: never kept
    assert await by_bytes.claim("failed", "fp", "t") is None

    short = MemoryAnswers(retention_seconds=0.05, max_entries=10, max_bytes=10**6)
    await short.finish("k", "t", answer(10))
    assert await short.claim("k", "fp", "t") is not None
    deadline = time.monotonic() + WAIT
    while await short.claim("k", "fp", "t") is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert short.bytes == 0


def test_the_fingerprint_is_of_the_input_as_canonical_json() -> None:
    assert fingerprint_of({"a": 1, "b": [1, 2]}) == fingerprint_of({"b": [1, 2], "a": 1})
    assert fingerprint_of({"a": 1}) != fingerprint_of({"a": 1.0})
    assert fingerprint_of({"a": "é"}) == fingerprint_of(json.loads('{"a": "\\u00e9"}'))
