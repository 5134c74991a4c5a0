"""Moved: the agent lives in the top-level `agent/` package (`AGENT_ENTRYPOINT=agent:run`).

This shim keeps `AGENT_ENTRYPOINT=app.agent:run` working for one release, with a warning; move
your agent into `agent/__init__.py` (and the schema and presets beside it).
"""

from __future__ import annotations

import warnings

warnings.warn(
    "app.agent moved to the top-level `agent` package: set AGENT_ENTRYPOINT=agent:run and keep "
    "your agent, input_schema.json and presets.json in agent/ (app.agent goes in the next release)",
    DeprecationWarning,
    stacklevel=2,
)

from agent import run  # noqa: E402

__all__ = ["run"]
