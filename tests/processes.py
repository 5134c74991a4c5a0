"""Running this project's Python in a child process, with a clean AGENT_* environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without AGENT_*/OTEL_*/ARIZE_*/PORT, plus `extra`.

    A developer's `.env` in the project is not read either (AGENT_ENV_FILE empty).
    """
    own = ("AGENT_", "OTEL_", "ARIZE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own) and k != "PORT"}
    return {**env, "PYTHONPATH": str(ROOT), "AGENT_ENV_FILE": "", **extra}


def run_python(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
