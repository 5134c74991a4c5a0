"""A real Phoenix on 127.0.0.1 as the OTLP receiver, for tests that check what reaches a collector.

Phoenix (arize-phoenix) lives in its own venv, `.phoenix/`, built from requirements/phoenix.lock by
`make install-phoenix` (which `make test` runs first); set PHOENIX_VENV to use another one. The
session-scoped `phoenix` fixture starts `phoenix serve` once on free ports with a throwaway working
directory, and reads spans back over Phoenix's REST API (`GET /v1/projects/{project}/spans`).

A span as Phoenix returns it (the fields the tests rely on):

    {"id": "<Phoenix global id>", "name": "...",
     "context": {"trace_id": "<32 hex>", "span_id": "<16 hex>"},
     "parent_id": "<16 hex>" | null, "span_kind": "AGENT" | ... | "UNKNOWN",
     "status_code": "OK" | "ERROR" | "UNSET", "status_message": "...",
     "start_time": "<ISO 8601>", "end_time": "<ISO 8601>",
     "attributes": {"dotted.key": value, ...}, "events": [...]}

`span_kind` is the `openinference.span.kind` attribute, which Phoenix moves out of `attributes`;
the other attributes are flattened to dotted keys. Resource attributes are not included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.live import free_port
from tests.patience import scaled
from tests.processes import ROOT

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3  # new ports when one was taken between choosing it and Phoenix binding it
PORT_TAKEN = ("failed to bind", "address already in use")  # gRPC's and uvicorn's words
LOG_TAIL_LINES = 40
PAGE_LIMIT = 1000
POLL_INTERVAL = 0.2
MAKE_HINT = "run `make install-phoenix` (`make test` does it first)"


def phoenix_venv() -> Path:
    """The venv holding Phoenix: $PHOENIX_VENV (relative to the repo root) or `.phoenix`."""
    return ROOT / os.environ.get("PHOENIX_VENV", ".phoenix")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class Phoenix:
    """A running Phoenix: where to send OTLP, and its spans read back over REST."""

    def __init__(
        self, process: subprocess.Popen[bytes], http_port: int, grpc_port: int, log: Path
    ) -> None:
        self.process = process
        self.base_url = f"http://127.0.0.1:{http_port}"
        self.otlp_http_endpoint = f"{self.base_url}/v1/traces"
        self.otlp_grpc_endpoint = f"http://127.0.0.1:{grpc_port}"
        self.log = log
        # trust_env=False: a proxy from the environment must never see loopback traffic.
        self.client = httpx.Client(base_url=self.base_url, timeout=10.0, trust_env=False)

    def log_tail(self) -> str:
        return log_tail(self.log)

    def _fetch_all(self, project: str) -> tuple[list[dict[str, Any]], str]:
        """Every span of `project` now, following `next_cursor`; an unknown project has none."""
        spans: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": PAGE_LIMIT}
            if cursor is not None:
                params["cursor"] = cursor
            response = self.client.get(
                f"/v1/projects/{quote(project, safe='')}/spans", params=params
            )
            if response.status_code == 404:  # the project appears with its first span
                return [], f"404 {response.text}"
            if response.is_error:
                pytest.fail(f"GET {response.url} answered {response.status_code}: {response.text}")
            body: dict[str, Any] = response.json()
            spans.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return spans, f"{response.status_code}"

    def spans(
        self, project: str, *, expected: int, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """All spans of `project` once at least `expected` are there (last stored first).

        `timeout` defaults to 20 s on an idle machine, scaled to its load.
        """
        if timeout is None:
            timeout = scaled(20.0)
        if "/" in project or "?" in project or "#" in project:
            raise ValueError(f"Phoenix cannot look up a project named {project!r}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                spans, last = self._fetch_all(project)
            except httpx.TransportError as exc:
                spans, last = [], f"{type(exc).__name__}: {exc}"
            if len(spans) >= expected:
                return spans
            if self.process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        state = "running" if self.process.poll() is None else f"exited {self.process.returncode}"
        names = [span.get("name") for span in spans]
        pytest.fail(
            f"Phoenix has {len(spans)} span(s) in project {project!r} after {timeout:.0f} s, "
            f"expected at least {expected}; spans: {names}; last response: {last}; "
            f"Phoenix {state}. Log tail:\n{self.log_tail()}"
        )

    def close(self) -> None:
        self.client.close()
        stop(self.process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate Phoenix (and anything it started in its process group), then kill it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def phoenix_env(working_dir: Path, http_port: int, grpc_port: int) -> dict[str, str]:
    """The environment without the developer's PHOENIX_*/OTEL_* settings, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    return {
        **env,
        "PHOENIX_WORKING_DIR": str(working_dir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(http_port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        # Nothing beyond this machine: no telemetry pixels, fonts or downloads.
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }


def start(executable: Path, working_dir: Path) -> Phoenix:
    """`phoenix serve` on fresh ports, once `GET /healthz` answers; fails with its log if not."""
    failure = ""
    for attempt in range(1, START_ATTEMPTS + 1):
        http_port, grpc_port = free_port(), free_port()
        while grpc_port == http_port:
            grpc_port = free_port()
        log = working_dir / f"phoenix-{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(executable), "serve"],
                cwd=working_dir,
                env=phoenix_env(working_dir / f"data-{attempt}", http_port, grpc_port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )
        phoenix = Phoenix(process, http_port, grpc_port, log)
        failure = wait_healthy(phoenix)
        if not failure:
            return phoenix
        phoenix.close()
        if not any(sign in phoenix.log_tail().lower() for sign in PORT_TAKEN):
            break  # not a port taken in the meantime: new ports would not help
    pytest.fail(f"Phoenix did not start: {failure}")


def wait_healthy(phoenix: Phoenix) -> str:
    """'' once Phoenix answers `GET /healthz`, else why not (with its log tail)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if phoenix.process.poll() is not None:
            return (
                f"`phoenix serve` exited with {phoenix.process.returncode}. "
                f"Log tail ({phoenix.log}):\n{phoenix.log_tail()}"
            )
        try:
            if phoenix.client.get("/healthz", timeout=2.0).status_code == 200:
                return ""
        except httpx.TransportError:
            pass
        time.sleep(POLL_INTERVAL)
    return (
        f"no answer on {phoenix.base_url}/healthz after {START_TIMEOUT:.0f} s. "
        f"Log tail ({phoenix.log}):\n{phoenix.log_tail()}"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "phoenix: exports to a real Phoenix on 127.0.0.1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the fixture carry the `phoenix` marker (`-m "not phoenix"` leaves them)."""
    for item in items:
        if "phoenix" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.phoenix)


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """One real Phoenix for the session; each test uses its own project name."""
    executable = phoenix_venv() / "bin" / "phoenix"
    if not executable.is_file():
        pytest.fail(f"no Phoenix at {executable}: {MAKE_HINT}, or point PHOENIX_VENV at a venv")
    running = start(executable, tmp_path_factory.mktemp("phoenix"))
    try:
        yield running
    finally:
        running.close()
