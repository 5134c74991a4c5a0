"""`make demo` end to end: bench/demo.py as the Makefile runs it, with Phoenix's venv of the tests.

Run with --keep on free ports: once it prints the URLs, the comparison's two experiments and the
trace are read back from its Phoenix, then Ctrl-C (SIGINT) must stop everything it started.
(`make demo` adds only the installs before this script; .ci runs it from a fresh clone.)
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.live import free_port
from tests.patience import scaled
from tests.phoenix import MAKE_HINT, phoenix_venv
from tests.processes import ROOT, clean_env

pytestmark = pytest.mark.live

# The demo takes 20-60 s here (Phoenix's start is most of it); a busy 2-core machine, more.
DEADLINE = 240.0
# The demo gives each of its two services 10 s to stop before killing it.
STOP_WAIT = 30.0


class Lines:
    """The demo's output lines, read by a thread of their own (a pipe read with timeouts)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        stdout = process.stdout
        self._thread = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._thread.start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._queue.put(line)
        self._queue.put(None)  # the demo exited

    def until(self, marker: str, deadline: float) -> str:
        """The output so far, once a line starting with `marker` has come."""
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if line.startswith(marker):
                return "".join(self.seen)
        pytest.fail(f"no {marker!r} line from the demo; its output:\n{''.join(self.seen)}")

    def join(self) -> None:
        self._thread.join(timeout=STOP_WAIT)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_demo_links_two_experiments_and_a_trace_then_stops_on_ctrl_c() -> None:
    venv = phoenix_venv()
    if not (venv / "bin" / "phoenix").is_file():
        pytest.fail(f"no Phoenix in {venv}: {MAKE_HINT}")
    ports = {"phoenix": free_port(), "grpc": free_port(), "endpoint": free_port()}
    process = subprocess.Popen(
        [
            sys.executable,
            "bench/demo.py",
            "--keep",
            "--phoenix-venv",
            str(venv),
            "--python",
            sys.executable,
            "--phoenix-port",
            str(ports["phoenix"]),
            "--grpc-port",
            str(ports["grpc"]),
            "--port",
            str(ports["endpoint"]),
        ],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = Lines(process)
    try:
        output = lines.until("a run's trace:", time.monotonic() + DEADLINE)
        lines.until("demo: serving until Ctrl-C", time.monotonic() + DEADLINE)
        compare = re.search(r"^comparison in Phoenix: (\S+)$", output, re.MULTILINE)
        trace = re.search(r"^a run's trace: +(\S+)$", output, re.MULTILINE)
        assert compare is not None, output
        assert trace is not None, output
        assert "verdict changes: 2 rows (worst first)" in output
        assert "trip-lisbon: max_tool_calls:4 fail → pass" in output
        base = f"http://127.0.0.1:{ports['phoenix']}"
        with httpx.Client(base_url=base, trust_env=False, timeout=10) as phoenix:
            parts = urlsplit(compare.group(1))
            dataset_id = parts.path.split("/")[2]
            experiment_ids = parse_qs(parts.query)["experimentId"]
            listed = phoenix.get(f"/v1/datasets/{dataset_id}/experiments").json()["data"]
            assert sorted(e["id"] for e in listed) == sorted(experiment_ids)
            assert {e["metadata"]["preset"] for e in listed} == {
                "Production baseline",
                "Tight budget",
            }
            _, project_id, _, trace_id = urlsplit(trace.group(1)).path.strip("/").split("/")
            spans = phoenix.get(f"/v1/projects/{project_id}/spans", params={"limit": 1000})
            assert trace_id in {s["context"]["trace_id"] for s in spans.json()["data"]}
            runs = phoenix.get(f"/v1/experiments/{experiment_ids[0]}/json").json()
            assert trace_id in {run["trace_id"] for run in runs}
            assert len(runs) == 4
            assert all(len(run["annotations"]) == 5 for run in runs)
        assert listening(ports["phoenix"])
        assert listening(ports["endpoint"])
        os.kill(process.pid, signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=scaled(STOP_WAIT)) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        lines.join()
        if process.stdout is not None:
            process.stdout.close()
    assert not listening(ports["phoenix"])
    assert not listening(ports["endpoint"])
