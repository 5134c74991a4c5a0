"""Pushing a finished job's result: to Arize's log API, or to a webhook of your own.

`AGENT_PUSH` picks the target: `arize` (a log record, `app/log_record.py`, posted with
`Authorization: <ARIZE_API_KEY>`), `webhook` (the job's status document, JSON, posted to
`AGENT_PUSH_WEBHOOK_URL`, signed with `X-Agent-Signature: sha256=<hex HMAC of the body>` when
`AGENT_PUSH_WEBHOOK_SECRET` is set), or `none`.

Retries: connection errors, timeouts, 429 and 5xx answers are retried
`AGENT_PUSH_ATTEMPTS` times in all, waiting `AGENT_PUSH_BACKOFF_SECONDS` doubled each time
(at most a minute, with jitter). Any other 4xx (the log API's 400 and 403 answers: bad record,
bad keys) is final: retrying cannot fix it, so it is logged once, with the answer's message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from app.entrypoint import load_callable
from app.job import Job, PushState, now
from app.log_record import LabelError, LabelMapping, default_label, log_record
from app.redaction import Redactor
from app.settings import MAX_PUSH_BACKOFF_SECONDS, Settings

if TYPE_CHECKING:
    # Imported when a pusher is built: aiohttp costs the process about 9 MiB, and most
    # deployments push nothing.
    import aiohttp

log = logging.getLogger("agent_endpoint")

MAX_ANSWER_CHARS = 300
SIGNATURE_HEADER = "X-Agent-Signature"

Sleep = Callable[[float], Awaitable[None]]


class PushTarget(Protocol):
    name: str

    async def send(self, session: aiohttp.ClientSession, job: Job) -> tuple[int, str]:
        """POST the job's result; the answer's status and text."""


class ArizeLogTarget:
    name = "arize"

    def __init__(
        self, url: str, api_key: str, space_key: str, model_id: str, label: LabelMapping
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._space_key = space_key
        self._model_id = model_id
        self._label = label

    async def send(self, session: aiohttp.ClientSession, job: Job) -> tuple[int, str]:
        record = log_record(
            job, space_key=self._space_key, model_id=self._model_id, label=self._label
        )
        headers = {"Authorization": self._api_key}
        async with session.post(self.url, json=record, headers=headers) as response:
            return response.status, await response.text()


class WebhookTarget:
    name = "webhook"

    def __init__(self, url: str, secret: str | None) -> None:
        self.url = url
        self._secret = secret or None

    async def send(self, session: aiohttp.ClientSession, job: Job) -> tuple[int, str]:
        body = job.view().model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        async with session.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()


def signature(secret: str, body: bytes) -> str:
    """The X-Agent-Signature value a webhook receiver recomputes to check a push."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class ResultPusher:
    def __init__(
        self,
        target: PushTarget,
        *,
        attempts: int,
        backoff_seconds: float,
        timeout_seconds: float,
        redact: Redactor,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.target = target
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._timeout_seconds = timeout_seconds
        self._redact = redact
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        import aiohttp  # noqa: PLC0415 - see the TYPE_CHECKING import above

        self._aiohttp = aiohttp

    async def push(self, job: Job) -> PushState:
        """Send the job's result, retrying what may pass later; the push's final state."""
        state = job.push.model_copy()
        session = self._session_for_loop()
        for attempt in range(1, self._attempts + 1):
            state.attempts += 1
            try:
                status, text = await self.target.send(session, job)
            except LabelError as exc:  # the user's label mapping: retrying cannot help
                state.status, state.last_error = "failed", str(exc)
                log.error("cannot push the result of job %s: %s", job.job_id, exc)  # noqa: TRY400
                return state
            except (self._aiohttp.ClientError, TimeoutError, OSError) as exc:
                state.last_error = self._redact(f"{type(exc).__name__}: {exc}")[:MAX_ANSWER_CHARS]
            else:
                if 200 <= status < 300:
                    state.status, state.last_error, state.pushed_at = "pushed", None, now()
                    return state
                answer = self._redact(f"{status} {text.strip()}")[:MAX_ANSWER_CHARS]
                state.last_error = answer
                if status != 429 and status < 500:
                    state.status = "refused"
                    log.error(
                        "%s refused the result of job %s (run %s): %s; not retried, since the "
                        "same push would be refused again (check the keys and the record)",
                        self.target.name, job.job_id, job.run_id, answer,
                    )  # fmt: skip
                    return state
            if attempt < self._attempts:
                await self._sleep(self._delay(attempt))
        state.status = "failed"
        log.error(
            "could not push the result of job %s (run %s) to %s after %d attempts: %s",
            job.job_id, job.run_id, self.target.name, self._attempts, state.last_error,
        )  # fmt: skip
        return state

    def _delay(self, attempt: int) -> float:
        base = min(self._backoff * 2.0 ** (attempt - 1), MAX_PUSH_BACKOFF_SECONDS)
        return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = self._aiohttp.ClientTimeout(total=self._timeout_seconds)
            self._session = self._aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def build_pusher(settings: Settings, redact: Redactor) -> ResultPusher | None:
    """The pusher `AGENT_PUSH` asks for (None for `none`); settings were checked at start."""
    target: PushTarget
    if settings.push_target == "arize":
        assert settings.arize_api_key is not None  # noqa: S101 - Settings.check_push_configured
        assert settings.arize_space_key is not None  # noqa: S101
        target = ArizeLogTarget(
            settings.arize_log_url,
            settings.arize_api_key.get_secret_value(),
            settings.arize_space_key.get_secret_value(),
            settings.push_model_id,
            load_label_mapping(settings.push_label),
        )
    elif settings.push_target == "webhook":
        assert settings.push_webhook_url is not None  # noqa: S101
        secret = settings.push_webhook_secret
        target = WebhookTarget(
            settings.push_webhook_url, secret.get_secret_value() if secret else None
        )
    else:
        return None
    return ResultPusher(
        target,
        attempts=settings.push_attempts,
        backoff_seconds=settings.push_backoff_seconds,
        timeout_seconds=settings.push_timeout_seconds,
        redact=redact,
    )


def load_label_mapping(spec: str | None) -> LabelMapping:
    if spec is None:
        return default_label
    mapping: LabelMapping = load_callable(spec, "AGENT_PUSH_LABEL")
    return mapping
