"""Load from wrk: one POST repeated on keep-alive connections, figures parsed from its output.

wrk runs with one thread (`-t 1`): on a 2-core machine one core serves, the other loads.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.server import RunningServer, Server

INSTALL_HINT = (
    "wrk is not installed; install it with `apt-get install -y wrk` (Debian/Ubuntu) and run "
    "the benchmark again"
)
EXTRA_TIMEOUT = 30  # seconds wrk may take past its duration before it is given up on

# wrk's units for durations (its format_time), in milliseconds.
TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
TIME = r"([\d.]+)(us|ms|s|m|h)"
PERCENTILE = r"^\s*{}(?:\.0+)?%\s+" + TIME + r"\s*$"
REQUESTS_PER_SECOND = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
REQUEST_COUNT = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.MULTILINE)
SOCKET_ERRORS = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE
)


class WrkError(RuntimeError):
    """wrk failed, or printed something this parser does not understand."""


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors


def find_wrk() -> str | None:
    return shutil.which("wrk")


def write_script(server: Server, directory: Path) -> Path:
    """The Lua script that makes wrk send `server`'s request; one file per server."""
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(server.body.decode())}"]
    lines += [
        f"wrk.headers[ {lua_string(name)} ] = {lua_string(value)}"  # "[[[" would not parse
        for name, value in server.headers.items()
    ]
    path = directory / f"{re.sub(r'[^A-Za-z0-9_-]', '_', server.name)}.lua"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def lua_string(text: str) -> str:
    """A Lua long-bracket literal `[==[text]==]`: no escapes to get wrong."""
    if not text.startswith("\n"):  # Lua drops a newline right after the opening bracket
        for level in range(16):
            equals = "=" * level
            if f"]{equals}]" not in text and not text.endswith(f"]{equals}"):
                return f"[{equals}[{text}]{equals}]"
    raise WrkError(f"cannot quote {text[:40]!r} as a Lua string")


def run_wrk(
    wrk: str, running: RunningServer, script: Path, seconds: int, connections: int
) -> WrkResult:
    command = [
        wrk,
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
        "-s",
        str(script),
        running.url,
    ]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + EXTRA_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk against {running.name} did not finish in time") from exc
    # wrk exits 0 even when the Lua script fails to load; it says so on stderr.
    if completed.returncode != 0 or completed.stderr.strip():
        raise WrkError(
            f"wrk against {running.name} exited with {completed.returncode}: "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    return parse_output(completed.stdout)


def parse_output(text: str) -> WrkResult:
    rate = _search(REQUESTS_PER_SECOND, text, "Requests/sec")
    count = _search(REQUEST_COUNT, text, "request count")
    non_2xx = NON_2XX.search(text)
    socket_errors = SOCKET_ERRORS.search(text)
    return WrkResult(
        requests_per_second=float(rate.group(1)),
        p50_ms=_percentile_ms(text, "50"),
        p99_ms=_percentile_ms(text, "99"),
        requests=int(count.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    )


def _percentile_ms(text: str, percent: str) -> float:
    match = _search(re.compile(PERCENTILE.format(percent), re.MULTILINE), text, f"{percent}%")
    return float(match.group(1)) * TIME_UNITS_MS[match.group(2)]


def _search(pattern: re.Pattern[str], text: str, what: str) -> re.Match[str]:
    match = pattern.search(text)
    if match is None:
        raise WrkError(f"no {what} in wrk's output:\n{text}")
    return match
