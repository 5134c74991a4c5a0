"""`make demo`: a local Arize in one command, up to a linked experiment in Phoenix.

Starts Phoenix (from its own venv) and the endpoint with the example agent (exporting its spans
to that Phoenix), runs the sample dataset (`coordinator/samples/trips-graded.csv`) with two
presets as two experiments on one Phoenix dataset, with evaluators, prints the terminal
comparison, then the Phoenix URLs of the comparison view and of one run's trace.

Then it stops everything it started, unless `--keep` (`make demo KEEP=1`): then Phoenix and the
endpoint stay up until Ctrl-C, to click through. Ctrl-C at any point stops what it started.
Phoenix's data lives in a temporary folder, removed at the end (with --keep, at the Ctrl-C).

Standard library only, so it runs before the app's venv exists: `make demo` installs Phoenix,
starts this script, and this script starts Phoenix and then runs `--install` (the app's install)
while Phoenix boots, its slowest step.

    python bench/demo.py [--keep] [--install COMMAND] [--python .venv/bin/python]
        [--phoenix-venv .phoenix] [--phoenix-port 6006] [--grpc-port 4317] [--port 8000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "coordinator" / "samples"
DATASET = SAMPLES / "trips-graded.csv"
PRESETS = ("Production baseline", "Tight budget")
EVALUATORS = (
    "json_schema:coordinator/samples/answer-schema.json",
    "contains:city@final_response",
    "regex:forecast@final_response",
    "max_tool_calls:4",
    "latency:2000",
)
START_TIMEOUT = 90.0
RUN_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0
POLL = 0.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep serving until Ctrl-C")
    parser.add_argument("--phoenix-venv", type=Path, default=ROOT / ".phoenix")
    parser.add_argument("--phoenix-port", type=int, default=6006)
    parser.add_argument("--grpc-port", type=int, default=4317)
    parser.add_argument("--port", type=int, default=8000, help="the endpoint's port")
    parser.add_argument(
        "--python", default=sys.executable, help="the app venv's python (default: this one)"
    )
    parser.add_argument(
        "--install", help="a shell command installing the app, run while Phoenix starts"
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    # SIGTERM (a test, a supervisor) unwinds like Ctrl-C, so the finally blocks stop the children.
    signal.signal(signal.SIGTERM, lambda *_: _interrupt())
    try:
        with ExitStack() as stack:
            data = Path(tempfile.mkdtemp(prefix="agent-endpoint-demo-"))
            stack.callback(shutil.rmtree, data, ignore_errors=True)
            phoenix_url = f"http://127.0.0.1:{args.phoenix_port}"
            endpoint_url = f"http://127.0.0.1:{args.port}"
            stack.enter_context(_phoenix(args, data, phoenix_url))
            if args.install:
                _install(args.install)
            stack.enter_context(_endpoint(args, data, phoenix_url))
            _wait(f"{phoenix_url}/healthz", "Phoenix", data / "phoenix.log")
            _wait(f"{endpoint_url}/readyz", "the endpoint", data / "endpoint.log")
            _say(f"Phoenix and the endpoint up in {time.monotonic() - began:.1f} s")
            outputs = _experiments(args.python, data, phoenix_url, endpoint_url)
            _compare(args.python, data)
            urls = _urls(outputs, phoenix_url)
            _say(f"done in {time.monotonic() - began:.1f} s")
            print(f"comparison in Phoenix: {urls['compare']}")
            print(f"a run's trace:         {urls['trace']}", flush=True)
            if args.keep:
                _say("serving until Ctrl-C (Phoenix on the URLs above)")
                signal.pause()
    except KeyboardInterrupt:
        _say("stopped")
        return 130
    except DemoError as exc:
        print(f"make demo: {exc}", file=sys.stderr)
        return 1
    return 0


class DemoError(RuntimeError):
    """A step failed; the message says which and where its log is."""


def _interrupt() -> None:
    raise KeyboardInterrupt


def _install(command: str) -> None:
    _say(f"installing the app while Phoenix starts: {command}")
    # A shell command from the Makefile (make's own `$(MAKE) install ...`).
    if subprocess.run(command, shell=True, cwd=ROOT, check=False).returncode:  # noqa: S602
        raise DemoError(f"the install failed: {command}")


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


@contextmanager
def _started(command: list[str], log: Path, env: dict[str, str]) -> Iterator[None]:
    """A child in its own process group, stopped (the group) when the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _phoenix(args: argparse.Namespace, data: Path, url: str) -> AbstractContextManager[None]:
    executable = args.phoenix_venv / "bin" / "phoenix"
    if not executable.is_file():
        raise DemoError(
            f"no Phoenix at {executable}: run `make install-phoenix` (`make demo` does)"
        )
    _say(f"starting Phoenix on {url}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env |= {
        "PHOENIX_WORKING_DIR": str(data / "phoenix"),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(args.phoenix_port),
        "PHOENIX_GRPC_PORT": str(args.grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }
    return _started([str(executable), "serve"], data / "phoenix.log", env)


def _endpoint(
    args: argparse.Namespace, data: Path, phoenix_url: str
) -> AbstractContextManager[None]:
    _say(f"starting the endpoint on http://127.0.0.1:{args.port} (example agent, no auth)")
    own = ("AGENT_", "OTEL_", "ARIZE_", "PHOENIX_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env |= {
        "AGENT_ENV_FILE": "",
        "AGENT_AUTH_DISABLED": "true",
        "AGENT_PRESETS_FILE": str(SAMPLES / "demo-presets.json"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix_url,
        "OTEL_BSP_SCHEDULE_DELAY": "500",  # spans in Phoenix half a second after each request
    }
    command = [args.python, "-m", "app.cli", "serve", "--port", str(args.port)]
    return _started(command, data / "endpoint.log", env)


def _wait(url: str, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with urlopen(url, timeout=2) as response:  # noqa: S310 - our own 127.0.0.1 URL
                if response.status == 200:
                    return
        except (URLError, OSError):
            pass
        time.sleep(POLL)
    raise DemoError(f"{what} did not answer {url} in {START_TIMEOUT:.0f} s; see {log}")


def _experiments(python: str, data: Path, phoenix_url: str, endpoint_url: str) -> list[str]:
    """The two presets' runs, side by side (each spends seconds importing Phoenix's client);
    the second starts once the first has its experiment (its results file is opened then), so
    the first alone creates the dataset and the second finds it."""
    runs: list[subprocess.Popen[str]] = []
    for preset in PRESETS:
        slug = preset.lower().replace(" ", "-")
        if runs:
            _wait_for_file(data / f"{PRESETS[0].lower().replace(' ', '-')}.jsonl", runs[0])
        command = [
            python,
            "-m",
            "app.cli",
            "coordinator",
            "run",
            "--url",
            f"{endpoint_url}/invoke",
            "--dataset",
            str(DATASET.relative_to(ROOT)),
            "--template",
            str((SAMPLES / "template.json").relative_to(ROOT)),
            "--preset",
            preset,
            "--phoenix",
            phoenix_url,
            "--experiment-name",
            preset,
            "--results",
            str(data / f"{slug}.jsonl"),
            "--allow-failures",
            *(flag for spec in EVALUATORS for flag in ("--eval", spec)),
        ]
        _say(f"running {DATASET.name} with the preset {preset!r}")
        runs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "AGENT_ENV_FILE": ""},
            )
        )
    outputs = []
    for preset, process in zip(PRESETS, runs, strict=True):
        try:
            output, _ = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise DemoError(f"the run with {preset!r} took over {RUN_TIMEOUT:.0f} s") from None
        print(f"\n--- {preset}\n{output.rstrip()}", flush=True)
        if process.returncode != 0:
            raise DemoError(f"the run with {preset!r} exited {process.returncode} (output above)")
        outputs.append(output)
    return outputs


def _wait_for_file(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL / 4)


def _compare(python: str, data: Path) -> None:
    a, b = (data / f"{p.lower().replace(' ', '-')}.jsonl" for p in PRESETS)
    print(f"\n--- {PRESETS[0]} (A) vs {PRESETS[1]} (B)", flush=True)
    subprocess.run(
        [python, "-m", "app.cli", "coordinator", "compare", str(a), str(b)],
        cwd=ROOT,
        check=False,
    )
    print(flush=True)


def _urls(outputs: list[str], phoenix_url: str) -> dict[str, str]:
    """The comparison of both experiments, and one trace, from the runs' printed URLs."""
    found = [re.search(r"datasets/([^/]+)/compare\?experimentId=(\S+)", o) for o in outputs]
    trace = re.search(r"phoenix: a trace: (\S+)", outputs[0])
    if not all(found) or trace is None:
        raise DemoError("a run printed no Phoenix URL (output above)")
    dataset = found[0].group(1)  # type: ignore[union-attr]
    ids = "&".join(f"experimentId={m.group(2)}" for m in found)  # type: ignore[union-attr]
    return {"compare": f"{phoenix_url}/datasets/{dataset}/compare?{ids}", "trace": trace.group(1)}


if __name__ == "__main__":
    sys.exit(main())
