"""Running a dataset through an endpoint the way Arize's coordinator does.

For every row: hydrate the body template and add `arize_metadata` with generated ids, in the
experiment's shape (see coordinator.template): `flat`, the Agent Playground's, puts the hydrated
fields at the top level with `arize_metadata` beside them; `wrapped`, the setup page's, sends
`{"input": ..., "arize_metadata": ...}`. Send it with a fresh W3C `traceparent` (the run's own
span), `tracestate` and the `arize.space_id`/`arize.project_name` baggage, and record one
result: the response stored verbatim, or the error (status and body, timeout, connection
failure). Rows run in parallel on `concurrency` workers pulling from the streamed dataset, so
memory stays flat.
Retries happen only where Arize would: connection errors and 429/5xx, with backoff; a retry
sends the same body, so it keeps the run's ids (the endpoint can tell a retry from a new run).
Each finished run's output goes through the experiment's evaluators (coordinator.evaluators), in
worker threads so a slow one never holds the event loop, before its line is written.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

from coordinator.dataset import Row
from coordinator.evaluators import Evaluator
from coordinator.log_api import LogStore
from coordinator.template import METADATA_KEY, Shape, TemplateError, hydrate
from coordinator.tracing import RunSpans

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0  # seconds: a larger Retry-After is cut to this
PUSH_POLL_SECONDS = 0.05
TRACESTATE = "arize=local-coordinator"


@dataclass(frozen=True)
class Experiment:
    """What one experiment sends; `headers` hold credentials and are never written out."""

    url: str
    template: Any
    # How the body is laid out and which placeholders fill it (coordinator.template).
    shape: Shape = "flat"
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    space_id: str = field(default_factory=lambda: f"sp_{uuid.uuid4().hex[:12]}")
    project_name: str | None = "local-experiments"
    dataset_id: str = field(default_factory=lambda: f"ds_{uuid.uuid4().hex[:12]}")
    experiment_id: str = field(default_factory=lambda: f"exp_{uuid.uuid4().hex[:12]}")
    concurrency: int = 10
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 0.5
    rate: float | None = None  # requests per second across all workers
    # Checks a hydrated body before it is sent; returns the violations (empty: send it).
    validate: Callable[[Any], list[str]] | None = field(default=None, repr=False)
    # For endpoints answering 202: where pushed records land, and how long to wait for each.
    pushes: LogStore | None = field(default=None, repr=False)
    push_wait: float = 300.0
    dry_run: bool = False  # hydrate (and validate) every row, send nothing
    # The run spans to start and export (None: a random traceparent, nothing exported).
    spans: RunSpans | None = field(default=None, repr=False)
    # Run on each output as it arrives; their verdicts go in the result's `evaluations`.
    evaluators: tuple[Evaluator, ...] = ()


@dataclass
class RunResult:
    """One line of the results file."""

    index: int
    example_id: str
    run_id: str
    trace_id: str
    request: Any
    status: int | None = None
    latency_ms: float | None = None
    attempts: int = 0
    response: Any = None
    error: dict[str, Any] | None = None
    pushed: dict[str, Any] | None = None  # for a 202: the record the agent pushed later
    shape: Shape = "flat"  # the body's shape, so a results file says what was sent
    # When the request was first sent and when the result was known (its push, for a 202).
    started_at: str | None = None
    ended_at: str | None = None
    # Evaluator name -> its verdict (score, label, explanation, or error), for runs that answered.
    evaluations: dict[str, dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def output(self) -> Any:
        """What the run produced: the record pushed for a 202, else the response body."""
        return self.pushed if self.pushed is not None else self.response


def traceparent() -> tuple[str, str, str]:
    """A fresh sampled W3C traceparent: (header, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def run_experiment(
    experiment: Experiment,
    rows: Iterator[Row],
    results: TextIO,
    *,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Send every row; write each result as a JSON line as soon as it is known.

    Returns the failed results only (a million successes are not kept in memory).
    """
    failed: list[RunResult] = []
    numbered = enumerate(rows)
    pace = _Pace(experiment.rate)

    waiting: list[asyncio.Task[None]] = []

    async def finish(result: RunResult, row: Row) -> None:
        result.ended_at = now_iso()
        if experiment.evaluators and result.ok and not experiment.dry_run:
            result.evaluations = await evaluate(experiment.evaluators, result, row)
        results.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
        if not result.ok:
            failed.append(result)
        if on_result is not None:
            on_result(result)

    async def await_push(result: RunResult, row: Row) -> None:
        assert experiment.pushes is not None  # noqa: S101 - only scheduled with a store
        result.pushed = await wait_for_push(experiment.pushes, result.run_id, experiment.push_wait)
        if result.pushed is None:
            result.error = {
                "kind": "push_timeout",
                "message": f"job accepted, but no record with prediction_id={result.run_id} "
                f"reached the log API within {experiment.push_wait:g} s",
            }
        await finish(result, row)

    async def worker(client: aiohttp.ClientSession) -> None:
        for index, row in numbered:  # workers share one iterator: each row is taken once
            result = await run_one(experiment, client, index, row, pace)
            if experiment.pushes is not None and accepted_as_job(result):
                # Arize's run is over; its final result arrives through the log API later.
                waiting.append(asyncio.create_task(await_push(result, row)))
            else:
                await finish(result, row)

    async with _client(experiment) as client:
        await asyncio.gather(*(worker(client) for _ in range(experiment.concurrency)))
    await asyncio.gather(*waiting)
    return failed


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


async def evaluate(
    evaluators: tuple[Evaluator, ...], result: RunResult, row: Row
) -> dict[str, dict[str, Any]]:
    """Every evaluator's verdict on the run's output, each in a worker thread (a user's function
    or an LLM judge may take its time); an evaluator's failure is its verdict's error."""
    verdicts = await asyncio.gather(
        *(asyncio.to_thread(e, result.output, row, result.latency_ms) for e in evaluators)
    )
    return {e.name: v.as_dict() for e, v in zip(evaluators, verdicts, strict=True)}


def accepted_as_job(result: RunResult) -> bool:
    """A 202, or a 200 whose body is a job document (agent-endpoint's `/invoke/async` answers
    200 by default, since Arize counts any other status as a failed run)."""
    if result.status == 202:
        return True
    body = result.response
    return result.status == 200 and isinstance(body, dict) and {"job_id", "status_url"} <= set(body)


async def wait_for_push(store: LogStore, run_id: str, wait_seconds: float) -> dict[str, Any] | None:
    """The record pushed for this run (prediction id = run id), polled for `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        found = store.by_prediction_id(run_id)
        if found or time.monotonic() >= deadline:
            return found[-1] if found else None
        await asyncio.sleep(PUSH_POLL_SECONDS)


@asynccontextmanager
async def _client(experiment: Experiment) -> AsyncIterator[aiohttp.ClientSession]:
    """One keep-alive connection per worker at most: aiohttp's client, for its low cost per
    request (httpx's connection pool cost about 3 ms of CPU per row at 64 connections)."""
    connector = aiohttp.TCPConnector(limit=experiment.concurrency)
    timeout = aiohttp.ClientTimeout(total=experiment.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        yield client


async def run_one(
    experiment: Experiment,
    client: aiohttp.ClientSession,
    index: int,
    row: Row,
    pace: _Pace | None = None,
) -> RunResult:
    header, trace_id, _ = traceparent()
    example_id = str(row.get("id") or row.get("example_id") or f"ex_{index}")
    result = RunResult(
        index=index,
        example_id=example_id,
        run_id=f"run_{uuid.uuid4().hex[:16]}",
        trace_id=trace_id,
        request=None,
        shape=experiment.shape,
    )
    try:
        result.request = hydrate(experiment.template, row, experiment.shape)
    except TemplateError as exc:
        result.error = {"kind": "template", "message": str(exc)}
        return result
    if experiment.validate is not None:
        violations = experiment.validate(result.request)
        if violations:
            result.error = {"kind": "schema", "violations": violations}
            return result
    if experiment.dry_run:
        return result
    metadata = _metadata(experiment, result)
    try:
        laid_out = _body_of(experiment.shape, result.request, metadata)
    except TemplateError as exc:
        result.error = {"kind": "template", "message": str(exc)}
        return result
    body = json.dumps(laid_out, ensure_ascii=False).encode()
    headers = {
        **experiment.headers,
        "Content-Type": "application/json",
        "traceparent": header,
        "tracestate": TRACESTATE,
        "baggage": _baggage(experiment),
    }
    if experiment.spans is None:
        await _send(experiment, client, body=body, headers=headers, result=result, pace=pace)
        return result
    with experiment.spans.run(metadata, result.request) as span:
        await span.announce()  # the trace exists in the run span's project before the request
        span.inject(headers)  # the endpoint's spans become children of the run span
        result.trace_id = span.trace_id
        await _send(experiment, client, body=body, headers=headers, result=result, pace=pace)
        span.finish(result.status, result.response, result.error)
    return result


async def _send(
    experiment: Experiment,
    client: aiohttp.ClientSession,
    *,
    body: bytes,
    headers: dict[str, str],
    result: RunResult,
    pace: _Pace | None,
) -> None:
    """POST with retries where Arize retries; fills status, response or error, latency."""
    result.started_at = now_iso()
    started = time.perf_counter()
    for attempt in range(1, experiment.retries + 2):
        result.attempts = attempt
        retry_after: float | None = None
        if pace is not None:
            await pace.wait()
        try:
            async with client.post(experiment.url, data=body, headers=headers) as response:
                status = response.status
                raw = await response.read()
                retry_header = response.headers.get("Retry-After", "")
        except TimeoutError:
            result.error = {"kind": "timeout", "message": f"no answer in {experiment.timeout:g} s"}
            break
        except aiohttp.ClientError as exc:
            result.error = {"kind": "connection", "message": f"{type(exc).__name__}: {exc}"}
        else:
            result.status = status
            if 200 <= status < 300:
                result.error = None
                result.response = _body(raw)
                break
            result.error = {"kind": "http", "status": status, "body": _body(raw)}
            if status not in RETRY_STATUSES:
                break
            retry_after = _retry_after(retry_header)
        if attempt <= experiment.retries:
            await asyncio.sleep(retry_after or experiment.backoff * 2 ** (attempt - 1))
    result.latency_ms = round((time.perf_counter() - started) * 1000, 3)


def _body_of(shape: Shape, request: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """The request body as Arize lays it out in this shape."""
    if shape == "wrapped":
        return {"input": request, METADATA_KEY: metadata}
    if not isinstance(request, dict):
        raise TemplateError(
            "with the flat shape the template's fields are sent at the top level, so it must be "
            "a JSON object (or use the wrapped shape to send it under input)"
        )
    return {**request, METADATA_KEY: metadata}


def _metadata(experiment: Experiment, result: RunResult) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dataset_id": experiment.dataset_id,
        "experiment_id": experiment.experiment_id,
        "run_id": result.run_id,
        "example_id": result.example_id,
        "space_id": experiment.space_id,
    }
    if experiment.project_name:
        metadata["project_name"] = experiment.project_name
    return metadata


def _baggage(experiment: Experiment) -> str:
    entries = [f"arize.space_id={quote(experiment.space_id, safe='')}"]
    if experiment.project_name:
        entries.append(f"arize.project_name={quote(experiment.project_name, safe='')}")
    return ",".join(entries)


def _body(raw: bytes) -> Any:
    """The response as JSON when it is JSON, else as text: stored verbatim either way."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def _retry_after(value: str) -> float | None:
    if not value.replace(".", "", 1).isdigit():
        return None
    return min(float(value), MAX_RETRY_AFTER)


def open_results(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")


class _Pace:
    """Spaces requests evenly to at most `rate` per second, across all workers."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)
