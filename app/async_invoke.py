"""`POST /invoke/async` and `GET /jobs/{job_id}`: the async pattern for minutes-long agents.

The submission goes through the same checks as `POST /invoke` (body limit, auth, content
type, envelope, placeholders, input schema), then the job is stored and queued, and the
answer is `202 Accepted` with `{"job_id", "run_id", "status_url"}` (and `Location`) at once.
The submission's span is the request span of the caller's trace; the job's span, wherever the
job runs, is its child (`app/job_runner.py`). When the job ends its result is pushed
(`app/result_push.py`); `GET` on the status URL, with the same credentials, shows its
progress at any time.
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
from app.envelope import InvokeRequest
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

    async def respond(request: Request, envelope: InvokeRequest, body: bytes) -> Response:
        metadata = envelope.arize_metadata
        run_id = metadata.run_id if metadata else None
        trace = tracing.start(request.headers, metadata, envelope.input, name=jobs.span_name)
        try:
            accept.check_input(envelope.input, run_id, body)
            # The job continues the trace from the submission's own span.
            job = jobs.new(envelope.input, metadata, trace_headers())
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
            status_url = f"{str(request.base_url).rstrip('/')}/jobs/{job.job_id}"
            answer = {"job_id": job.job_id, "run_id": run_id, "status_url": status_url}
            response = JSONResponse(answer, status_code=202, headers={"Location": status_url})
            trace.record_output(bytes(response.body), 202)
        except ApiError as exc:
            exc.run_id = run_id
            trace.fail(exc.status_code, exc.error_type, exc.message, exc)
            raise
        finally:
            trace.end()
        return response

    return submit


def status_handler(
    authenticate: Authenticator, jobs: Jobs
) -> Callable[[Request, str], Awaitable[Response]]:
    async def status(request: Request, job_id: str) -> Response:
        authenticate(request)
        try:
            job = await jobs.store.get(job_id)
        except JobStoreUnavailableError as exc:
            raise _store_unavailable(exc, None) from None
        if job is None:
            return error_response(
                404,
                "job_not_found",
                f"no job {job_id!r}: the id is wrong, or the job ended more than "
                f"AGENT_JOB_RETENTION_SECONDS={jobs.retention_seconds:g} s ago",
            )
        return Response(job.view().model_dump_json().encode(), media_type="application/json")

    return status


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
    `POST /invoke`); the status as a FastAPI route."""
    submit_path = f"{settings.invoke_path.rstrip('/')}/async"
    submit = submit_handler(accept, tracing, jobs, idempotency)
    status = status_handler(authenticate, jobs)
    app.router.routes.append(Route(submit_path, submit, methods=["POST"]))
    app.add_api_route(
        submit_path,
        submit,
        methods=["POST"],
        summary="Start the agent on one dataset row as a job; 202 with the job id at once",
        description=(
            "The same envelope and checks as the sync route. The job runs in the background "
            "(AGENT_JOBS) with AGENT_JOB_TIMEOUT_SECONDS as its limit; its result is pushed "
            "to Arize's log API or a webhook (AGENT_PUSH) and shown at `status_url`."
        ),
        response_class=JSONResponse,
        status_code=202,
        responses={
            202: {"model": Submitted, "description": "The job is queued."},
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
