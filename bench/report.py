"""What every benchmark shares: argument checks, the run's ending and the JSON results file."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def at_least_2(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2, got {value}")
    return value


def write_results(document: dict[str, Any], started: datetime, name: str) -> Path:
    """bench/results/<name>-<UTC timestamp>.json (the folder is gitignored)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


def conclude(
    run: Callable[[], bool],
    document: dict[str, Any],
    started: datetime,
    name: str,
    *,
    errors: tuple[type[Exception], ...],
    stopped: str,
) -> int:
    """Run the benchmark, record its outcome in the results file, and give the exit status.

    `errors` are the failures that end a run with a message rather than a traceback;
    `stopped` says what Ctrl-C has stopped.
    """
    try:
        ok = run()
    except errors as exc:
        print(f"\nbench: {exc}", file=sys.stderr)
        ok = False
        document["error"] = str(exc)
    except KeyboardInterrupt:
        print(f"\nbench: interrupted; {stopped} stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    document["all_requests_ok"] = ok
    path = write_results(document, started, name)
    print(f"\nresults: {path.relative_to(RESULTS_DIR.parent.parent)}")
    if not ok:
        print("bench: some measurements FAILED (see above)", file=sys.stderr)
    return 0 if ok else EXIT_FAILED


def _jsonable(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
