"""Retried rows run once: the same run id (or `Idempotency-Key`) never runs the agent twice.

Arize's coordinator retries rows, so one row can arrive twice, even at once. Every request
with a key goes through `Idempotency.run`:

- **The key** is the `Idempotency-Key` header when there is one (the IETF httpapi draft's
  field, for callers other than Arize), else `arize_metadata.run_id`; without either the
  request runs as before. The header wins because it is the caller's explicit statement of
  what a retry is; the run id is the default Arize gives every row without being asked. Keys
  are scoped per route (`POST /invoke` and `POST /invoke/async` with the same run id are two
  different operations) and per source (a header value equal to some run id is another key).
- **The fingerprint** is sha256 of the agent's `input` as canonical JSON (sorted keys, no
  spaces, ASCII escapes), not of the raw body: a retry may be serialised differently (key
  order, whitespace, wrapped or flat envelope, other `arize_metadata` extras) yet ask for the
  same run, while the input is exactly what the agent would see. The same key with another
  input is a 409 naming the key.
- **One run per key**: the first request runs; duplicates wait for its answer, whatever it
  is (status and body; a 499 of a caller that went away is no answer: the waiters take over).
  A 2xx answer is kept `AGENT_IDEMPOTENCY_RETENTION_SECONDS` and replayed byte for byte with
  `Idempotent-Replayed: true` (also on the replay's span, `idempotency.replayed`); failures
  are not kept, so a later retry runs again.
- **Within a process** duplicates wait on an asyncio future of the first (`_Flight`), so only
  one request per key and process ever talks to the store. **Across processes** the store
  coordinates: `MemoryAnswers` here (one process: nothing to coordinate), `RedisAnswers`
  (`app/redis_idempotency.py`) with a claim that lapses if its owner dies.
- **No waiting for ever**: a duplicate waits at most the run's own bound (queue wait plus
  time limit) plus two margins, then gets 503 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from app.envelope import Envelope
from app.errors import ApiError, api_error_response, error_response
from app.offload import off_the_loop
from app.settings import Settings
from app.tracing import RequestSpan, Tracing

log = logging.getLogger("agent_endpoint")

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
REPLAYED_ATTRIBUTE = "idempotency.replayed"
KEY_ATTRIBUTE = "idempotency.key"
MAX_KEY_LENGTH = 255
# Added to a run's own bound for the claim's lifetime (rendering, the store's writes, a busy
# machine), and again to a waiter's patience so that it outlasts a dead owner's claim.
MARGIN_SECONDS = 5.0
# What a kept answer costs in memory besides its key, headers and body: the entry's objects
# (dict slot, tuple, Answer, bytes and str headers): bench/idempotency.py measured about 490
# bytes per entry besides its key and body, on CPython 3.11.
ENTRY_OVERHEAD = 512
ABANDONED = frozenset({499})  # the owner's caller left: its answer is nobody else's


@dataclass(frozen=True, slots=True)
class Answer:
    """One response as it can be handed to a waiter or kept for a replay."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    fingerprint: str

    @classmethod
    def of(cls, response: Response, fingerprint: str) -> Answer:
        headers = tuple(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in response.raw_headers
            if name != b"content-length"
        )
        body = bytes(response.body)
        return cls(response.status_code, _shared_headers(headers), body, fingerprint)

    @property
    def kept(self) -> bool:
        """Successes are kept for replays; failures are not, so a retry runs again."""
        return 200 <= self.status < 300

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(name) + len(value) for name, value in self.headers)

    def response(self) -> Response:
        response = Response(self.body, status_code=self.status)  # sets content-length only
        response.raw_headers.extend(
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in self.headers
        )
        response.raw_headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
        return response


_HEADER_TUPLES: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}


def _shared_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Most answers carry the same headers: keep one copy of each common set."""
    if len(_HEADER_TUPLES) > 64:
        return headers
    return _HEADER_TUPLES.setdefault(headers, headers)


@dataclass(frozen=True, slots=True)
class Running:
    """Another process holds the claim on the key: its token and its input's fingerprint."""

    token: str
    fingerprint: str


class AnswerStore(Protocol):
    """Where answers outlive their request and claims are seen by other processes."""

    async def claim(self, key: str, fingerprint: str, token: str) -> Answer | Running | None:
        """None: this request holds the claim and runs. An Answer: kept, replay it. Running:
        another process runs it."""

    async def poll(self, key: str, running: Running) -> Answer | Running | None:
        """What became of another process's run: its answer, still (or newly) running, or
        None: gone without an answer, claim again."""

    async def finish(self, key: str, token: str, answer: Answer | None) -> None:
        """Keep a 2xx answer, hand any answer to other processes' waiters, drop the claim."""

    async def close(self) -> None: ...


class MemoryAnswers:
    """One process's kept answers: oldest first, bounded in entries, bytes and age.

    There is nothing to claim (the process's own flights make one run per key) and nobody
    else to hand an answer to.
    """

    def __init__(self, retention_seconds: float, max_entries: int, max_bytes: int) -> None:
        self._retention = retention_seconds
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, int, Answer]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def claim(self, key: str, fingerprint: str, token: str) -> Answer | Running | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, _, answer = entry
        if expires <= time.monotonic():
            self._drop(key)
            return None
        return answer

    async def poll(self, key: str, running: Running) -> Answer | Running | None:
        return None  # never Running: see the class docstring

    async def finish(self, key: str, token: str, answer: Answer | None) -> None:
        if answer is None or not answer.kept:
            return
        cost = ENTRY_OVERHEAD + len(key) + answer.size
        if cost > self._max_bytes:
            return  # bigger than the whole store: simply not kept
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + self._retention, cost, answer)
        self.bytes += cost
        self._evict()

    def _evict(self) -> None:
        now = time.monotonic()
        entries = self._entries
        while entries:
            key, (expires, _, _) = next(iter(entries.items()))
            full = len(entries) > self._max_entries or self.bytes > self._max_bytes
            if not full and expires > now:
                return  # one retention for all: the oldest entry expires first
            self._drop(key)

    def _drop(self, key: str) -> None:
        _, cost, _ = self._entries.pop(key)
        self.bytes -= cost

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0


@dataclass(frozen=True, slots=True)
class Key:
    store: str  # what the store is keyed on: route, source and value
    shown: str  # what messages call it


def request_key(request: Request, run_id: str | None, route: str) -> Key | None:
    """The header if present (it wins over the run id), else the run id, else none."""
    values = request.headers.getlist(HEADER)
    if len(values) > 1:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "the request carries Idempotency-Key more than once; send it once",
            run_id=run_id,
        )
    if values:
        value = _header_value(values[0], run_id)
        return Key(f"{route} header {value}", f"Idempotency-Key {value!r}")
    if run_id:
        return Key(f"{route} run_id {run_id}", f"arize_metadata.run_id {run_id!r}")
    return None


def _header_value(raw: str, run_id: str | None) -> str:
    """The draft's sf-string (`"abc"`), or the bare token many clients send."""
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not value or len(value) > MAX_KEY_LENGTH:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must hold 1 to {MAX_KEY_LENGTH} characters, e.g. a UUID as "
            '`Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`',
            run_id=run_id,
        )
    return value


def fingerprint_of(payload: dict[str, Any]) -> str:
    """sha256 of the input as canonical JSON: see the module docstring for why not the body."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(slots=True)
class _Flight:
    """This process's request that leads on a key; followers await `done`."""

    fingerprint: str
    done: asyncio.Future[Answer | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    outcome: Answer | None = None  # what the followers get; None: they take over


Produce = Callable[[], Awaitable[Response]]
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.25


class Idempotency:
    """One run per key across this process's requests and, through the store, all replicas."""

    def __init__(
        self,
        store: AnswerStore,
        tracing: Tracing,
        *,
        hold_seconds: float,
        enabled: bool = True,
    ) -> None:
        """`hold_seconds`: the longest a run holds its claim; waiters wait a margin longer."""
        self.store = store
        self.enabled = enabled
        self.hold_seconds = hold_seconds
        self.wait_seconds = hold_seconds + MARGIN_SECONDS
        self._tracing = tracing
        self._flights: dict[str, _Flight] = {}
        self.waiting = 0  # requests waiting for another's answer, here or on another replica

    async def run(
        self,
        request: Request,
        envelope: Envelope,
        produce: Produce,
        *,
        route: str,
        span_name: str | None = None,
    ) -> Response:
        """The answer for this request: its own run's, the first duplicate's, or a kept one."""
        if not self.enabled:
            return await produce()
        metadata = envelope.arize_metadata
        run_id = metadata.run_id if metadata else None
        key = request_key(request, run_id, route)
        if key is None:
            return await produce()
        fingerprint = await off_the_loop(envelope.size, fingerprint_of, envelope.input)
        deadline = time.monotonic() + self.wait_seconds
        while (flight := self._flights.get(key.store)) is not None:
            with _Follower(self._tracing, request, envelope, span_name, key) as span:
                self._same_input(key, fingerprint, flight.fingerprint, request, run_id)
                answer = await self._await(flight.done, deadline, key, run_id)
                if answer is not None:
                    return span.replay(answer)
            # the leader's run was abandoned: lead now, or follow whoever did
        flight = _Flight(fingerprint)
        self._flights[key.store] = flight
        try:
            return await self._lead(
                request,
                envelope,
                produce,
                key=key,
                flight=flight,
                deadline=deadline,
                span_name=span_name,
            )
        finally:
            del self._flights[key.store]
            flight.done.set_result(flight.outcome)

    async def _lead(
        self,
        request: Request,
        envelope: Envelope,
        produce: Produce,
        *,
        key: Key,
        flight: _Flight,
        deadline: float,
        span_name: str | None,
    ) -> Response:
        """This process's first request on the key: replay, wait for another process, or run;
        `flight.outcome` is what this process's duplicates get."""
        fingerprint = flight.fingerprint
        run_id = envelope.arize_metadata.run_id if envelope.arize_metadata else None
        token = secrets.token_hex(12)
        found = await self.store.claim(key.store, fingerprint, token)
        if found is not None:
            with _Follower(self._tracing, request, envelope, span_name, key) as span:
                while found is not None:
                    self._same_input(key, fingerprint, found.fingerprint, request, run_id)
                    if isinstance(found, Answer):
                        flight.outcome = found
                        return span.replay(found)
                    found = await self._poll(found, key, run_id, deadline)
                    if found is None:  # its owner died, or ended without an answer for us
                        found = await self.store.claim(key.store, fingerprint, token)
        answer: Answer | None = None
        try:
            response = await produce()
            answer = Answer.of(response, fingerprint)
        except ApiError as exc:
            answer = Answer.of(api_error_response(exc), fingerprint)
            raise
        except Exception:  # the handler answers 500 internal_error: so do the waiters
            answer = Answer.of(_internal_error(run_id), fingerprint)
            raise
        finally:
            if answer is not None and answer.status in ABANDONED:
                answer = None
            flight.outcome = answer
            await self.store.finish(key.store, token, answer)
        return response

    async def _poll(
        self, running: Running, key: Key, run_id: str | None, deadline: float
    ) -> Answer | Running | None:
        """Another process runs the key: poll the store, backing off, until it changes."""
        delay = POLL_FIRST_SECONDS
        self.waiting += 1
        try:
            return await self._poll_until_changed(running, key, run_id, deadline, delay)
        finally:
            self.waiting -= 1

    async def _poll_until_changed(
        self, running: Running, key: Key, run_id: str | None, deadline: float, delay: float
    ) -> Answer | Running | None:
        while True:
            if time.monotonic() >= deadline:
                raise self._gave_up(key, run_id)
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, POLL_MAX_SECONDS)
            found = await self.store.poll(key.store, running)
            if found != running:
                return found

    async def _await(
        self, done: asyncio.Future[Answer | None], deadline: float, key: Key, run_id: str | None
    ) -> Answer | None:
        self.waiting += 1
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                return await asyncio.shield(done)
        except TimeoutError:
            raise self._gave_up(key, run_id) from None
        finally:
            self.waiting -= 1

    def _same_input(
        self, key: Key, fingerprint: str, first: str, request: Request, run_id: str | None
    ) -> None:
        if fingerprint == first:
            return
        raise ApiError(
            409,
            "idempotency_key_reused",
            f"{key.shown} was already used on POST {request.url.path} with a different input; "
            "resend the same input to get the first answer, or use a new key (Arize: a new "
            "run) for a new input. Inputs are compared as canonical JSON, so key order and "
            "spacing do not matter",
            run_id=run_id,
        )

    def _gave_up(self, key: Key, run_id: str | None) -> ApiError:
        retry = round(MARGIN_SECONDS)
        return ApiError(
            503,
            "duplicate_still_running",
            f"the first request with {key.shown} is still running after {self.wait_seconds:g} s "
            f"(the run's time limit and queue wait, plus margins), so this duplicate stopped "
            f"waiting; retry after {retry} s, when the first has answered or its claim has "
            "lapsed, or raise AGENT_TIMEOUT_SECONDS if runs legitimately take this long",
            headers={"Retry-After": str(retry)},
            run_id=run_id,
        )

    async def close(self) -> None:
        await self.store.close()


def _loop_time(deadline: float) -> float:
    """A time.monotonic() deadline on the event loop's clock."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())


def _internal_error(run_id: str | None) -> Response:
    message = "internal error; see the server log"
    return error_response(500, "internal_error", message, run_id=run_id)


class _Follower:
    """The span of a request that did not run the agent: a replay, a wait, or a refusal."""

    def __init__(
        self,
        tracing: Tracing,
        request: Request,
        envelope: Envelope,
        span_name: str | None,
        key: Key,
    ) -> None:
        self._trace: RequestSpan = tracing.start(
            request.headers, envelope.arize_metadata, envelope.input, name=span_name
        )
        self._trace.span.set_attribute(KEY_ATTRIBUTE, key.shown)

    def __enter__(self) -> _Follower:
        return self

    def replay(self, answer: Answer) -> Response:
        self._trace.span.set_attribute(REPLAYED_ATTRIBUTE, True)
        self._trace.record_output(answer.body, answer.status)
        return answer.response()

    def __exit__(self, kind: object, exc: BaseException | None, _: object) -> None:
        if isinstance(exc, ApiError):
            self._trace.fail(exc.status_code, exc.error_type, exc.message, exc)
        self._trace.end()


def build_idempotency(settings: Settings, tracing: Tracing) -> Idempotency:
    """Redis when the jobs are there (every replica sees every claim), else this process."""
    hold = settings.queue_wait_seconds + settings.timeout_seconds + MARGIN_SECONDS
    store: AnswerStore
    if settings.idempotency and settings.jobs_mode == "redis" and settings.redis_url is not None:
        # Imported here: the Redis client costs processes that do not use it.
        from app.redis_idempotency import RedisAnswers  # noqa: PLC0415

        store = RedisAnswers(
            settings.redis_url.get_secret_value(),
            retention_seconds=settings.idempotency_retention_seconds,
            max_entries=settings.idempotency_max_entries,
            max_bytes=settings.idempotency_max_bytes,
            hold_seconds=hold,
        )
    else:
        store = MemoryAnswers(
            settings.idempotency_retention_seconds,
            settings.idempotency_max_entries,
            settings.idempotency_max_bytes,
        )
    return Idempotency(store, tracing, hold_seconds=hold, enabled=settings.idempotency)
