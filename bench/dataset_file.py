"""The generated dataset the coordinator benchmark runs: a JSONL file and its body template.

Each row is `{"id": "ex_<n>", "question": "..."}`; the template puts the question under `goal`,
the field bench.agents answers from. Rows are written one at a time, so a file of millions of
rows costs no memory to make.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CITIES = ("Tokyo", "Lisbon", "Nairobi", "Lima", "Oslo", "Hanoi", "Montreal", "Seville")

# Arize's body template for the rows: a whole-string placeholder and a fixed config.
TEMPLATE: dict[str, Any] = {"goal": "{{question}}", "config": {"model": "m", "max_turns": 12}}


def row(index: int) -> dict[str, Any]:
    """Row `index`: an id and a question of about 50 characters."""
    city = CITIES[index % len(CITIES)]
    return {"id": f"ex_{index}", "question": f"Plan a {index % 5 + 2}-day trip to {city} #{index}"}


def write_jsonl(path: Path, rows: int) -> int:
    """Write `rows` rows to `path`, one JSON object a line; returns the file's size in bytes."""
    with path.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            handle.write(json.dumps(row(index), ensure_ascii=False) + "\n")
    return path.stat().st_size
