"""Abusive clients against `agent-endpoint serve` (the example agent), on 127.0.0.1 only.

    python -m bench.abuse                      # 60 s of mixed load
    python -m bench.abuse --seconds 10         # a quick run
    python -m bench.abuse --scenario huge-headers     # 8 unfinished 64 MB headers: server RSS
    python -m bench.abuse --scenario partial-headers  # 200 slow heads, `ulimit -n 256`: /healthz

`mixed`: valid and invalid POST /invoke from a few client threads while slow clients (partial
headers, a lying Content-Length, 500 headers) keep coming; prints requests/s, p99, errors and
the server's RSS at start and end. The server's header and body time limits are set to 2 s
(BENCH_ENV) so slow clients get their answer within the run. The server is a child process
with a random key, stopped (SIGTERM, then kill) when the run ends; every phase is bounded in
time and count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
METADATA = {
    "dataset_id": "ds_bench",
    "experiment_id": "exp_bench",
    "run_id": "run_bench",
    "example_id": "ex_bench",
    "space_id": "sp_bench",
}
VALID = {"input": {"goal": "Plan a 3-day trip to Tokyo"}, "arize_metadata": METADATA}
INVALID = {"input": {}, "arize_metadata": METADATA}  # no goal: 422
EXPECTED = {"valid": "200", "invalid": "422"}
# Short server time limits, so slow clients are answered within the run (--env overrides).
BENCH_ENV = {"AGENT_HEADER_TIMEOUT_SECONDS": "2", "AGENT_BODY_TIMEOUT_SECONDS": "2"}
MEGABYTE = 1 << 20


@dataclass
class Server:
    url: str
    port: int
    key: str
    process: subprocess.Popen[bytes]

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def open_fds(self) -> int:
        return sum(1 for _ in Path(f"/proc/{self.process.pid}/fd").iterdir())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(fd_limit: int | None, env: dict[str, str]) -> Iterator[Server]:
    """`agent-endpoint serve` in a child process (its own fd limit), stopped on exit."""
    port, key = free_port(), secrets.token_urlsafe(24)
    own = ("AGENT_", "OTEL_", "ARIZE_")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    child_env.update(
        AGENT_API_KEYS=key,
        AGENT_ENV_FILE="",
        AGENT_LOG_LEVEL="warning",
        OTEL_TRACES_EXPORTER="none",
        PYTHONPATH=str(ROOT),
        **env,
    )

    def limit_fds() -> None:
        if fd_limit is not None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, hard))

    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", HOST, "--port", str(port)],
            cwd=tempfile.gettempdir(),
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_fds,  # noqa: PLW1509 - only sets an rlimit
        )
        server = Server(f"http://{HOST}:{port}", port, key, process)
        try:
            _wait_ready(server, log)
            yield server
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines()
            print(f"server log: {len(lines)} lines")


def _wait_ready(server: Server, log: object) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"the server exited with {server.process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit("the server did not become ready")


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# -- scenario: huge unfinished headers ------------------------------------------------------


def huge_headers(server: Server, clients: int, megabytes: int) -> None:
    """`clients` connections each send one header of `megabytes` MB that never ends."""
    before = server.rss_mib()
    peak = [before]
    refused = [0]
    done = threading.Event()

    def one() -> None:
        chunk = b"a" * MEGABYTE
        with contextlib.suppress(OSError), connect(server.port, timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Big: ")
            try:
                for _ in range(megabytes):
                    sock.sendall(chunk)
            except OSError:
                refused[0] += 1
                return
            done.wait(5)  # hold the unfinished header a moment, as an attacker would

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak[0] = max(peak[0], server.rss_mib())
        time.sleep(0.05)
    done.set()
    ok = httpx.get(f"{server.url}/healthz", timeout=5).status_code
    print(
        f"huge-headers: {clients} x {megabytes} MB unfinished header; server RSS "
        f"{before:.0f} MiB before, {peak[0]:.0f} MiB peak, {server.rss_mib():.0f} MiB after; "
        f"{refused[0]} clients cut off by the server; /healthz then: {ok}"
    )


# -- scenario: many partial heads under a low fd limit ---------------------------------------


def partial_headers(server: Server, clients: int, seconds: float) -> None:
    """Hold `clients` connections with half a request head; probe /healthz meanwhile."""
    held: list[socket.socket] = []
    try:
        for _ in range(clients):
            try:
                sock = connect(server.port, timeout=2)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: ")
                held.append(sock)
            except OSError:
                break
        print(f"partial-headers: {len(held)} of {clients} slow connections opened")
        ok = failed = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"{server.url}/healthz", timeout=2).status_code
                ok += status == 200
                failed += status != 200
            except httpx.TransportError:
                failed += 1
            time.sleep(0.5)
        closed = sum(_closed_by_server(sock) for sock in held)
        print(
            f"partial-headers: /healthz {ok} ok, {failed} failed over {seconds:g} s; "
            f"{closed} slow connections closed by the server; server fds {server.open_fds()}"
        )
    finally:
        for sock in held:
            sock.close()


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        sock.recv(65536)  # an answer (408) or the end of the stream
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


# -- scenario: mixed load --------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: str, seconds: float | None = None) -> None:
        with self.lock:
            name = f"{kind} {status}"
            self.statuses[name] = self.statuses.get(name, 0) + 1
            if seconds is not None:
                self.latencies.append(seconds)


def mixed(server: Server, seconds: float, clients: int, slow_clients: int) -> None:
    headers = {"Authorization": f"Bearer {server.key}"}
    tally = Tally()
    stop = time.monotonic() + seconds
    rss_start = server.rss_mib()

    def caller(index: int) -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            count = 0
            while time.monotonic() < stop:
                count += 1
                invalid = count % 4 == 0
                body: object = INVALID if invalid else VALID
                kind = "invalid" if invalid else "valid"
                began = time.perf_counter()
                try:
                    response = client.post("/invoke", json=body)
                    tally.add(kind, str(response.status_code), time.perf_counter() - began)
                except httpx.HTTPError as exc:
                    tally.add(kind, type(exc).__name__)

    def slow(index: int) -> None:
        attacks: list[Callable[[socket.socket], None]] = [
            lambda s: s.sendall(b"POST /invoke HTTP/1.1\r\nHost: bench\r\nX-Slow: "),
            lambda s: s.sendall(
                b"POST /invoke HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + server.key.encode() + b"\r\n"
                b"Content-Length: 100000\r\n\r\n{"
            ),
            lambda s: s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n" + b"X: y\r\n" * 500),
        ]
        count = 0
        while time.monotonic() < stop:
            attack = attacks[(index + count) % len(attacks)]
            count += 1
            try:
                with connect(server.port, timeout=max(0.1, min(5.0, stop - time.monotonic()))) as s:
                    attack(s)
                    answer = s.recv(4096)  # waits for the server to answer or close
                    status = answer.split(b" ", 2)[1].decode() if answer else "closed"
                    tally.add("slow", status)
            except TimeoutError:
                tally.add("slow", "unanswered")  # by the end of the run or within 5 s
            except OSError as exc:
                tally.add("slow", type(exc).__name__)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=slow, args=(i,)) for i in range(slow_clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    elapsed = time.monotonic() - began
    latencies = sorted(tally.latencies)
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
    answered = len(latencies)
    errors = sum(
        n
        for name, n in tally.statuses.items()
        if not name.startswith("slow") and name.split(" ", 1)[1] != EXPECTED[name.split(" ")[0]]
    )
    print(
        f"mixed: {elapsed:.1f} s, {clients} clients + {slow_clients} slow clients; "
        f"{answered / elapsed:.0f} requests/s answered, p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    print("outcomes:", json.dumps(dict(sorted(tally.statuses.items()))))
    print(f"errors (valid not 200, invalid not 422, transport failures): {errors}")
    health = httpx.get(f"{server.url}/healthz", timeout=5).status_code
    print(
        f"server RSS {rss_start:.0f} MiB at start, {server.rss_mib():.0f} MiB at end; "
        f"/healthz after: {health}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario", choices=["mixed", "huge-headers", "partial-headers"], default="mixed"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="mixed / partial-headers")
    parser.add_argument("--clients", type=int, default=8, help="mixed: normal client threads")
    parser.add_argument("--slow-clients", type=int, default=16, help="mixed: slow client threads")
    parser.add_argument(
        "--held", type=int, default=300, help="partial-headers: slow connections held"
    )
    parser.add_argument("--fd-limit", type=int, help="the server's RLIMIT_NOFILE (ulimit -n)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="server setting"
    )
    args = parser.parse_args()
    env = {**BENCH_ENV, **dict(item.split("=", 1) for item in args.env)}
    if args.scenario == "huge-headers":
        with serve(args.fd_limit, env) as server:
            huge_headers(server, clients=8, megabytes=64)
    elif args.scenario == "partial-headers":
        with serve(args.fd_limit or 256, env) as server:
            partial_headers(server, clients=args.held, seconds=min(args.seconds, 120))
    else:
        with serve(args.fd_limit, env) as server:
            mixed(server, min(args.seconds, 600), args.clients, args.slow_clients)
    return 0


if __name__ == "__main__":
    sys.exit(main())
