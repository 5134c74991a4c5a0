"""`POST /invoke/async`, `GET` and `DELETE /jobs/{job_id}`: the async pattern for long agents.

The submission goes through the same checks as `POST /invoke` (body limit, auth, content
type, envelope, placeholders, input schema), then the job is stored and queued, and the
answer is `{"job_id", "run_id", "status_url"}` (and `Location`) at once, with status 200:
Arize records any other status as a failed run. A caller that asks for it with
`Prefer: respond-async` (RFC 7240), or every caller with `AGENT_ASYNC_STATUS=202`, gets
`202 Accepted` instead.
The submission's span is the request span of the caller's trace; the job's span, wherever the
job runs, is its child (`app/job_runner.py`). When the job ends its result is pushed
(`app/result_push.py`); `GET` on the status URL, with the same credentials, shows its
progress at any time; `DELETE` on it cancels the job (`Jobs.cancel`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.auth import Authenticator
from app.envelope import Envelope
from app.errors import ERROR_RESPONSES, ApiError, ErrorBody, error_response
from app.idempotency import Idempotency
from app.invoke import Acceptance
from app.job import JobView
from app.job_queue import QueueFullError
from app.job_store import JobStoreUnavailableError
from app.jobs import Jobs
from app.settings import Settings
from app.tracing import Tracing, trace_headers

Handler = Callable[[Request], Awaitable[Response]]
RETRY_AFTER_SECONDS = 5
STATUS_PATH = "/jobs/{job_id}"


class Submitted(BaseModel):
    job_id: str
    run_id: str | None = Field(description="`arize_metadata.run_id`, if sent.")
    status_url: str = Field(description="GET it, with the same credentials, for the job's state.")


def submit_handler(
    accept: Acceptance, tracing: Tracing, jobs: Jobs, idempotency: Idempotency
) -> Handler:
    async def submit(request: Request) -> Response:
        envelope, body = await accept.envelope(request)
        answer = lambda: respond(request, envelope, body)  # noqa: E731
        return await idempotency.run(
            request, envelope, answer, route="async", span_name=jobs.span_name
        )

    async def respond(request: Request, envelope: Envelope, body: bytes) -> Response:
        metadata = envelope.arize_metadata
        run_id = metadata.run_id if metadata else None
        trace = tracing.start(request.headers, metadata, envelope.traced, name=jobs.span_name)
        try:
            await accept.check_input(envelope, body, trace)
            # The job continues the trace from the submission's own span.
            submitter = accept.authenticate.key_fingerprint(request)
            job = jobs.new(envelope.input, metadata, trace_headers(), submitter)
            try:
                await jobs.submit(job)
            except JobStoreUnavailableError as exc:
                raise _store_unavailable(exc, run_id) from None
            except QueueFullError as exc:
                raise _retry_later(
                    "job_queue_full",
                    f"no room for another job ({exc}); retry after {RETRY_AFTER_SECONDS} s, or "
                    "raise AGENT_JOB_QUEUE_SIZE / AGENT_JOB_CONCURRENCY",
                    run_id,
                ) from None
            base = jobs.public_url or str(request.base_url).rstrip("/")
            status_url = f"{base}/jobs/{job.job_id}"
            answer = {"job_id": job.job_id, "run_id": run_id, "status_url": status_url}
            response = submitted_response(answer, status_url, request, jobs.async_status)
            trace.record_output(bytes(response.body), response.status_code)
        except ApiError as exc:
            exc.run_id = run_id
            trace.fail(exc.status_code, exc.error_type, exc.message, exc)
            raise
        finally:
            trace.end()
        return response

    return submit


def submitted_response(
    answer: dict[str, Any], status_url: str, request: Request, default_status: int
) -> JSONResponse:
    """200, or 202 when `AGENT_ASYNC_STATUS=202` or the caller prefers `respond-async`."""
    headers = {"Location": status_url, "Vary": "Prefer"}
    status_code = default_status
    if prefers_respond_async(request.headers.getlist("prefer")):
        status_code = 202
        headers["Preference-Applied"] = "respond-async"
    return JSONResponse(answer, status_code=status_code, headers=headers)


def prefers_respond_async(values: list[str]) -> bool:
    """Whether the `Prefer` header fields (RFC 7240) hold the `respond-async` preference.

    Each field is a comma-separated list of `token [= value] *(; parameter)`; tokens are
    case-insensitive, values may be quoted strings holding commas or semicolons.
    """
    return any(
        _split_unquoted(preference, ";")[0].split("=", 1)[0].strip().lower() == "respond-async"
        for value in values
        for preference in _split_unquoted(value, ",")
    )


def _split_unquoted(text: str, separator: str) -> list[str]:
    """`text` cut at each `separator` outside a quoted string (backslash escapes inside)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def status_handler(
    authenticate: Authenticator, jobs: Jobs
) -> Callable[[Request, str], Awaitable[Response]]:
    async def status(request: Request, job_id: str) -> Response:
        authenticate(request)
        try:
            job = await jobs.store.get(job_id)
        except JobStoreUnavailableError as exc:
            raise _store_unavailable(exc, None) from None
        if job is None or not jobs.may_access(job, authenticate.key_fingerprint(request)):
            return _not_found(job_id, jobs)
        return Response(job.view().model_dump_json().encode(), media_type="application/json")

    return status


def cancel_handler(
    authenticate: Authenticator, jobs: Jobs
) -> Callable[[Request, str], Awaitable[Response]]:
    async def cancel(request: Request, job_id: str) -> Response:
        authenticate(request)
        try:
            job, changed = await jobs.cancel(job_id, authenticate.key_fingerprint(request))
        except JobStoreUnavailableError as exc:
            raise _store_unavailable(exc, None) from None
        if job is None:
            return _not_found(job_id, jobs)
        if not changed:
            return error_response(
                409,
                "job_finished",
                f"job {job_id!r} is already {job.status.value}: only a queued or running job "
                f"can be cancelled; GET /jobs/{job_id} shows how it ended",
            )
        return Response(job.view().model_dump_json().encode(), media_type="application/json")

    return cancel


def _not_found(job_id: str, jobs: Jobs) -> Response:
    why = f"ended more than AGENT_JOB_RETENTION_SECONDS={jobs.retention_seconds:g} s ago"
    if jobs.max_jobs is not None:
        why += f", or was among the oldest past AGENT_JOB_STORE_MAX_JOBS={jobs.max_jobs}"
    if jobs.access == "submitter":
        why += ", or was submitted with another API key (AGENT_JOB_ACCESS=submitter)"
    return error_response(404, "job_not_found", f"no job {job_id!r}: the id is wrong, or it {why}")


def _store_unavailable(exc: JobStoreUnavailableError, run_id: str | None) -> ApiError:
    message = f"the job store (Redis) did not answer ({exc}); retry after {RETRY_AFTER_SECONDS} s"
    return _retry_later("job_store_unavailable", message, run_id)


def _retry_later(error_type: str, message: str, run_id: str | None) -> ApiError:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return ApiError(503, error_type, message, headers=headers, run_id=run_id)


def add_job_routes(
    app: FastAPI,
    *,
    settings: Settings,
    accept: Acceptance,
    authenticate: Authenticator,
    tracing: Tracing,
    jobs: Jobs,
    idempotency: Idempotency,
    request_body: Callable[[str], dict[str, Any]],
) -> None:
    """The submission as a plain Starlette route documented by a FastAPI route behind it (as
    `POST /invoke`); the status and the cancellation as FastAPI routes."""
    submit_path = f"{settings.invoke_path.rstrip('/')}/async"
    submit = submit_handler(accept, tracing, jobs, idempotency)
    status = status_handler(authenticate, jobs)
    cancel = cancel_handler(authenticate, jobs)
    app.router.routes.append(Route(submit_path, submit, methods=["POST"]))

    async def job(request: Request) -> Response:
        handler = cancel if request.method == "DELETE" else status
        return await handler(request, request.path_params["job_id"])

    # One route serves both methods, so a 405 lists both in `Allow`; the FastAPI routes
    # below only document them.
    app.router.routes.append(Route(STATUS_PATH, job, methods=["GET", "DELETE"]))
    app.add_api_route(
        submit_path,
        submit,
        methods=["POST"],
        summary="Start the agent on one dataset row as a job; the job id at once",
        description=(
            "The same envelope and checks as the sync route. The job runs in the background "
            "(AGENT_JOBS) with AGENT_JOB_TIMEOUT_SECONDS as its limit; its result is pushed "
            "to Arize's log API or a webhook (AGENT_PUSH) and shown at `status_url`. The "
            "answer is 200, which Arize counts as a finished run (it records any other "
            "status as a failed one), unless the caller sends `Prefer: respond-async` or "
            "AGENT_ASYNC_STATUS=202: then 202, with `Preference-Applied: respond-async` for "
            "the former."
        ),
        response_class=JSONResponse,
        status_code=200,
        responses={
            200: {"model": Submitted, "description": "The job is queued (the default)."},
            202: {
                "model": Submitted,
                "description": "The job is queued (`Prefer: respond-async`, or "
                "AGENT_ASYNC_STATUS=202).",
            },
            **ERROR_RESPONSES,
        },
        openapi_extra={"requestBody": request_body(submit_path)},
        tags=["agent"],
    )
    app.add_api_route(
        STATUS_PATH,
        status,
        methods=["GET"],
        summary="A job's status, timestamps, result or error, and push",
        response_class=JSONResponse,
        responses={
            200: {"model": JobView, "description": "The job as it is now."},
            401: ERROR_RESPONSES[401],
            404: {"model": ErrorBody, "description": "No such job, or it expired."},
        },
        tags=["agent"],
    )
    app.add_api_route(
        STATUS_PATH,
        cancel,
        methods=["DELETE"],
        summary="Cancel a queued or running job",
        description=(
            "A queued job never starts; a running job's agent sees `ctx.cancelled` set and "
            "its task cancelled (within about a second, in whichever process runs it). The "
            "job ends `cancelled` with error type `cancelled`, and is pushed as such (a failed "
            "run), so the experiment's row is closed. A finished job is left as it is (409)."
        ),
        response_class=JSONResponse,
        responses={
            200: {"model": JobView, "description": "The job, now cancelled."},
            401: ERROR_RESPONSES[401],
            404: {"model": ErrorBody, "description": "No such job, or it expired."},
            409: {"model": ErrorBody, "description": "The job already finished."},
        },
        tags=["agent"],
    )
