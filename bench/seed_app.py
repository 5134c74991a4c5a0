"""The baseline: the "minimal Python agent endpoint" of Arize's docs, with a no-op agent.

Served as `uvicorn bench.seed_app:app` next to this project's app so both are measured with the
same uvicorn settings and the same request; see bench/invoke.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

app = FastAPI()


class InvokeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: dict[str, Any] | None = None
    arize_metadata: dict[str, Any] | None = None


async def run_my_agent(goal: str, **config: Any) -> dict[str, Any]:
    """Your agent goes here; a no-op for the benchmark."""
    return {"final_response": f"Done: {goal}", "tool_calls": [], "trace_id": None}


# response_model=None: the docs' route has no return annotation, so FastAPI does not validate
# the response against one; this keeps the annotation without adding that cost.
@app.post("/invoke", response_model=None)
async def invoke(req: InvokeRequest) -> dict[str, Any]:
    body = req.input or {}
    goal = body.get("goal")
    if not goal:
        raise HTTPException(status_code=400, detail="input.goal is required")
    config = body.get("config") or {}
    result = await run_my_agent(goal=goal, **config)
    return {
        "final_response": result["final_response"],
        "tool_calls": result["tool_calls"],
        "trace_id": result["trace_id"],
    }
