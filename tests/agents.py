"""Agents the tests load by entrypoint string (AGENT_ENTRYPOINT=tests.agents:...)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.context import AgentContext

NOT_CALLABLE = {"an": "object"}


async def echo(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    return {"input": input, "run_id": ctx.run_id}


def sync_echo(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    return {"input": input, "run_id": ctx.run_id}


async def slow(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    await asyncio.sleep(float(input.get("seconds", 1)))
    return {"slept": input.get("seconds", 1)}


def blocking(input: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:  # noqa: A002
    time.sleep(float(input.get("seconds", 1)))
    return {"slept": input.get("seconds", 1)}


def one_argument(input: dict[str, Any]) -> None:  # noqa: A002
    """Wrong: the agent must accept (input, ctx)."""


class Tools:
    @staticmethod
    async def run(input: dict[str, Any], ctx: AgentContext) -> str:  # noqa: A002
        return "nested attribute"
