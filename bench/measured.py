"""One command run to completion, bounded in time, with the kernel's account of what it used.

The child is reaped with wait4(2), which returns its own resource usage: the peak resident set
(`ru_maxrss`, the high-water mark the kernel keeps for the process, the figure `/usr/bin/time -v`
prints as "Maximum resident set size") and its user and system CPU time. Unlike polling
/proc/<pid>/status it cannot miss a late peak, and unlike getrusage(RUSAGE_CHILDREN) it is not
mixed with other children of this process (servers, wrk). The exit is noticed through a pidfd, so
the wall time ends when the process does, not at the next poll. Linux only.
"""

from __future__ import annotations

import os
import resource
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

STOP_TIMEOUT = 10.0  # seconds between terminate and kill


class MeasuredError(RuntimeError):
    """The command did not finish within its time limit (it was stopped)."""


@dataclass(frozen=True)
class Measured:
    exit_code: int
    wall_seconds: float  # from just before the start to the exit
    cpu_seconds: float  # user + system
    peak_rss_mib: float


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    stdout: IO[bytes],
    stderr: IO[bytes],
) -> Measured:
    """Run `argv` to its exit; terminate, then kill it if it outlives `timeout` or on error."""
    started = time.perf_counter()
    process = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
    )
    try:
        usage = _reap(process, timeout)
        wall = time.perf_counter() - started
        if usage is None:
            raise MeasuredError(f"{Path(argv[0]).name} did not finish within {timeout:g} s")
    finally:
        _stop(process)
    assert process.returncode is not None  # noqa: S101 - set by _reap
    return Measured(
        exit_code=process.returncode,
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,  # Linux reports kilobytes
    )


def _reap(process: subprocess.Popen[bytes], seconds: float) -> resource.struct_rusage | None:
    """Wait up to `seconds` for the exit; reap with wait4 and return the usage, else None."""
    descriptor = os.pidfd_open(process.pid)  # readable once the process has exited
    try:
        ready, _, _ = select.select([descriptor], [], [], seconds)
    finally:
        os.close(descriptor)
    if not ready:
        return None
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
    return usage


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill; a no-op once the process has been reaped."""
    if process.returncode is not None:
        return
    process.terminate()
    if _reap(process, STOP_TIMEOUT) is None:
        process.kill()
        _reap(process, STOP_TIMEOUT)
