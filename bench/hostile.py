"""How long hostile bodies hold the event loop: /healthz latency while they are served.

`python -m bench.hostile [--rounds N]` starts the app (example agent, auth off) as a uvicorn
subprocess on 127.0.0.1, measures /healthz latency idle (the baseline), then while each hostile
body below is sent `--rounds` times by two senders, a prober keeps asking /healthz every 5 ms.
A stall of the loop shows as health latency: the figure reported per body is its p99 and max
as a ratio of the idle p99, plus the answers' statuses. Bounded in count and time; stops by
itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.server import HOST, Server, free_ports, serving, uvicorn_command

MIB = 1 << 20
PROBE_INTERVAL = 0.005


def hostile_bodies() -> dict[str, bytes]:
    """The worst cases found for each scan of request data (issue 14), each near 1 MiB."""
    spaces = b'{"goal": "{{' + b" " * (MIB - 40) + b'x"}'
    embedded = json.dumps({"goal": "{{a}} " * (MIB // 7)}).encode()
    whole = json.dumps({f"f{n}": "{{x}}" for n in range(60_000)}).encode()
    braces = json.dumps({"goal": "{{" * (MIB // 4) + "}}" * (MIB // 4)}).encode()
    digits = json.dumps({"goal": "Tokyo " + "1" * (MIB - 40)}).encode()
    wide = json.dumps({f"k{n}": n for n in range(80_000)}).encode()
    deep = b'{"goal": "x", "d": ' + b"[" * 60 + b"]" * 60 + b"}"
    too_deep = b'{"goal": "x", "d": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    return {
        "spaces after {{": spaces,
        "placeholders inside a value": embedded,
        "60k unfilled fields": whole,
        "{{ }} runs": braces,
        "digits in the goal": digits,
        "80k unknown keys": wide,
        "60 levels": deep,
        "200k levels": too_deep,
    }


def post(port: int, path: str, body: bytes) -> int:
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def probe(port: int, stop: threading.Event, latencies: list[float]) -> None:
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            latencies.append(time.perf_counter() - started)
            stop.wait(PROBE_INTERVAL)
    finally:
        connection.close()


def measured(port: int, load: Callable[[], None]) -> list[float]:
    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(port, stop, latencies))
    prober.start()
    try:
        load()
    finally:
        stop.set()
        prober.join()
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="sends of each body per sender")
    args = parser.parse_args()
    env = {"AGENT_AUTH_DISABLED": "true", "AGENT_MAX_BODY_BYTES": str(4 * MIB)}
    server = Server(
        name="agent-endpoint",
        argv=uvicorn_command("app.main:app"),
        env=env,
        path="/invoke",
        headers={"Content-Type": "application/json"},
        body=b'{"goal": "2 days in Lisbon"}',
        expected=None,
    )
    (port,) = free_ports(1)
    with (
        tempfile.TemporaryDirectory() as workdir,
        serving(server, port, Path(workdir), check=lambda _: None),
    ):
        idle = measured(port, lambda: time.sleep(2.0))
        baseline = p99(idle)
        print(f"idle /healthz: p99 {baseline * 1000:.2f} ms over {len(idle)} probes")
        print(f"{'body':30} {'size':>9} {'statuses':>16} {'p99/idle':>10} {'max ms':>8}")
        for name, body in hostile_bodies().items():
            statuses: list[int] = []

            def send(body: bytes = body, statuses: list[int] = statuses) -> None:
                statuses.extend(post(port, "/invoke", body) for _ in range(args.rounds))

            def load(send: Callable[[], None] = send) -> None:
                senders = [threading.Thread(target=send) for _ in range(2)]
                for sender in senders:
                    sender.start()
                for sender in senders:
                    sender.join()

            latencies = measured(port, load)
            shown = ",".join(str(s) for s in sorted(set(statuses)))
            print(
                f"{name:30} {len(body) / MIB:8.2f}M {shown:>16} {p99(latencies) / baseline:10.1f} "
                f"{max(latencies) * 1000:8.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
