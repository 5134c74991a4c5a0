"""Retried rows run once across API replicas: the claims and kept answers in Redis.

Only imported with `AGENT_JOBS=redis` (`app.idempotency.build_idempotency`). Per key (the
sha256 of the scoped key, `<ns>:idem:…:<digest>`):

- `claim:<digest>` = `<token> <fingerprint>`, taken with `SET NX PX` by the one request
  that runs, inside a script that first looks for a kept answer, so a claim is never taken
  after the answer was written. It lapses after the run's bound plus a margin
  (`hold_seconds`): a replica that died mid-run (kill -9, OOM) blocks the key no longer, and
  a waiter then claims it and runs.
- `answer:<digest>` = the kept 2xx answer, with the retention as its TTL. The same script
  that writes it drops the claim (if still ours) and evicts the oldest answers past
  AGENT_IDEMPOTENCY_MAX_ENTRIES / _MAX_BYTES, tracked in a sorted set `index` (by time) and a
  hash `sizes` (bytes, total under `*`).
- `handoff:<digest>:<token>` = an answer that is not kept (a failure, or too big), for the
  waiters of that run only, for HANDOFF_SECONDS.

Waiters on other replicas poll (MGET of the three) with a backoff from 20 ms to 250 ms; one
per key and replica, the others wait on it in-process. Polling rather than pub/sub: no
connection held per waiter, nothing lost while a subscriber reconnects, and a lapsed claim
is noticed the same way as an answer.

Redis trouble does not fail the request: a claim that cannot be taken is logged and the row
runs (at least once rather than not at all), as the sync route never depended on Redis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, cast

import redis.asyncio
from redis.exceptions import RedisError

from app.idempotency import ENTRY_OVERHEAD, Answer, Running, _shared_headers
from app.job_broker import NAMESPACE

log = logging.getLogger("agent_endpoint")

HANDOFF_SECONDS = 30  # well past the slowest poll of a waiter
MAX_CONNECTIONS = 32
CONNECTION_WAIT_SECONDS = 5
SOCKET_TIMEOUT_SECONDS = 5

# KEYS: answer, claim. ARGV: claim value, claim lifetime (ms).
CLAIM = """
local answer = redis.call('GET', KEYS[1])
if answer then return {'answer', answer} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'claimed'} end
return {'running', redis.call('GET', KEYS[2])}
"""

# KEYS: answer, claim, index, sizes. ARGV: claim token, answer, retention (ms), now (ms),
# max entries, max bytes, cost.
KEEP = """
local retention, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_entries, max_bytes, cost = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local function forget(member)
  local size = tonumber(redis.call('HGET', KEYS[4], member) or '0')
  redis.call('ZREM', KEYS[3], member)
  if size > 0 then  -- (Redis reads the -0 of Lua as no integer)
    redis.call('HDEL', KEYS[4], member)
    redis.call('HINCRBY', KEYS[4], '*', -size)
  end
  return size
end
local holder = redis.call('GET', KEYS[2])
if holder and string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[2])
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - retention)) do
  forget(member)
end
forget(KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', retention)
redis.call('ZADD', KEYS[3], now, KEYS[1])
redis.call('HSET', KEYS[4], KEYS[1], cost)
local total = redis.call('HINCRBY', KEYS[4], '*', cost)
while redis.call('ZCARD', KEYS[3]) > max_entries or total > max_bytes do
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  total = total - forget(oldest)
  redis.call('DEL', oldest)
end
redis.call('PEXPIRE', KEYS[3], retention)
redis.call('PEXPIRE', KEYS[4], retention)
return 1
"""

# KEYS: claim, handoff. ARGV: claim token, answer ('' for none), handoff lifetime (ms).
HAND_OFF = """
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
end
return 1
"""


def encode(answer: Answer) -> bytes:
    """A JSON head line, then the body's bytes as they are (no base64 inflation)."""
    head = {"s": answer.status, "h": answer.headers, "f": answer.fingerprint}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + answer.body


def decode(data: bytes) -> Answer:
    head_line, _, body = data.partition(b"\n")
    head: dict[str, Any] = json.loads(head_line)
    headers = _shared_headers(tuple((str(name), str(value)) for name, value in head["h"]))
    return Answer(int(head["s"]), headers, body, str(head["f"]))


def _running(value: bytes | None) -> Running | None:
    if value is None:
        return None
    token, _, fingerprint = value.decode().partition(" ")
    return Running(token, fingerprint)


class RedisAnswers:
    """The `AnswerStore` shared by every replica on one Redis."""

    def __init__(
        self,
        url: str,
        *,
        retention_seconds: float,
        max_entries: int,
        max_bytes: int,
        hold_seconds: float,
        namespace: str = NAMESPACE,
    ) -> None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=CONNECTION_WAIT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        )
        self._redis = redis.asyncio.Redis.from_pool(pool)
        self._prefix = f"{namespace}:idem"
        self._retention_ms = max(1, int(retention_seconds * 1000))
        self._hold_ms = max(1, int(hold_seconds * 1000))
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._claim = self._redis.register_script(CLAIM)
        self._keep = self._redis.register_script(KEEP)
        self._hand_off = self._redis.register_script(HAND_OFF)

    def _keys(self, key: str) -> tuple[str, str]:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self._prefix}:answer:{digest}", f"{self._prefix}:claim:{digest}"

    def _handoff(self, key: str, token: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self._prefix}:handoff:{digest}:{token}"

    async def claim(self, key: str, fingerprint: str, token: str) -> Answer | Running | None:
        try:
            found = await self._claim(
                keys=self._keys(key), args=[f"{token} {fingerprint}", self._hold_ms]
            )
        except RedisError as exc:
            log.warning(
                "idempotency: Redis failed (%s); running %s without a claim, so a "
                "duplicate elsewhere may run too",
                type(exc).__name__,
                key,
            )
            return None
        kind = found[0]
        if kind == b"answer":
            return decode(found[1])
        if kind == b"claimed":
            return None
        return _running(found[1] if len(found) > 1 else None) or Running("", fingerprint)

    async def poll(self, key: str, running: Running) -> Answer | Running | None:
        answer_key, claim_key = self._keys(key)
        try:
            values = await self._redis.mget(
                [self._handoff(key, running.token), answer_key, claim_key]
            )
            handoff, answer, claim = cast("list[bytes | None]", values)
        except RedisError as exc:
            log.warning("idempotency: Redis failed (%s); still waiting", type(exc).__name__)
            return running
        if handoff is not None:
            return decode(handoff)
        if answer is not None:
            return decode(answer)
        return _running(claim)

    async def finish(self, key: str, token: str, answer: Answer | None) -> None:
        answer_key, claim_key = self._keys(key)
        try:
            if answer is not None and answer.kept:
                cost = ENTRY_OVERHEAD + len(answer_key) + answer.size
                if cost <= self._max_bytes:
                    now = int(time.time() * 1000)
                    await self._keep(
                        keys=[answer_key, claim_key, *self._index_keys()],
                        args=[
                            token,
                            encode(answer),
                            self._retention_ms,
                            now,
                            self._max_entries,
                            self._max_bytes,
                            cost,
                        ],
                    )
                    return
            handoff = encode(answer) if answer is not None else b""
            await self._hand_off(
                keys=[claim_key, self._handoff(key, token)],
                args=[token, handoff, HANDOFF_SECONDS * 1000],
            )
        except RedisError as exc:
            log.warning(
                "idempotency: Redis failed (%s); the answer to %s is not kept and its "
                "claim lapses in %d s",
                type(exc).__name__,
                key,
                self._hold_ms // 1000,
            )

    def _index_keys(self) -> list[str]:
        return [f"{self._prefix}:index", f"{self._prefix}:sizes"]

    async def close(self) -> None:
        await self._redis.aclose()
