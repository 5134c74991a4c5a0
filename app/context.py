"""What the agent receives besides its input: `run(input, ctx)`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from app.envelope import ArizeMetadata
from app.settings import Settings

AGENT_LOGGER = logging.getLogger("agent")


@dataclass
class AgentContext:
    """Per-request context handed to the agent.

    - `config`: `input["config"]` when it is an object (Arize presets fill it), else `{}`.
    - `metadata`: Arize's ids for this run (`None` when called without `arize_metadata`).
    - `logger`: a logger whose records carry the run id.
    - `cancelled`: set when the run times out or the caller disconnects; a sync agent that
      loops should check `ctx.cancelled.is_set()` and stop, since a thread cannot be killed.
    - `deadline`: `time.monotonic()` value at which the run is cut off; see `time_left()`.
    """

    config: dict[str, Any]
    metadata: ArizeMetadata | None
    settings: Settings
    logger: logging.LoggerAdapter[logging.Logger]
    deadline: float
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def run_id(self) -> str | None:
        return self.metadata.run_id if self.metadata else None

    def time_left(self) -> float:
        """Seconds until the time limit; pass it on as the timeout of slow calls."""
        return max(0.0, self.deadline - time.monotonic())


def build_context(
    payload: dict[str, Any], metadata: ArizeMetadata | None, settings: Settings
) -> AgentContext:
    config = payload.get("config")
    run_id = metadata.run_id if metadata else None
    return AgentContext(
        config=config if isinstance(config, dict) else {},
        metadata=metadata,
        settings=settings,
        logger=logging.LoggerAdapter(AGENT_LOGGER, {"run_id": run_id}),
        deadline=time.monotonic() + settings.timeout_seconds,
    )
