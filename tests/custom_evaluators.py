"""Evaluators of a user's own, as `--eval tests.custom_evaluators:NAME` loads them."""

from __future__ import annotations

from typing import Any


def broken(output: Any, row: dict[str, Any]) -> float:
    raise RuntimeError(f"this evaluator always fails (row {row.get('id')})")


def graded(output: Any, row: dict[str, Any]) -> tuple[float, str, str]:
    days = len([line for line in output["final_response"].splitlines() if line.startswith("Day")])
    return (days / 7, f"{days} days", "days planned, out of 7")
