"""Agents the benchmark serves through AGENT_ENTRYPOINT=bench.agents:<name>.

Each answers like the seed app's no-op agent, so every server under test returns the same JSON
and the comparison measures the HTTP path alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.context import AgentContext


def answer(input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002 - the agent contract's name
    """The small dict the seed app returns too."""
    return {"final_response": f"Done: {input['goal']}", "tool_calls": [], "trace_id": None}


async def noop(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """Returns at once, on the event loop: the cost of the service around the agent."""
    return answer(input)


async def sleep_1s(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """An async agent waiting one second, like one awaiting an LLM API."""
    await asyncio.sleep(1)
    return answer(input)


def block_1s(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    """A sync agent blocking its thread for one second, like one using a blocking LLM client."""
    time.sleep(1)
    return answer(input)
