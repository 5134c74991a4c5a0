"""The progress bar and the row count it relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.dataset import Dataset
from coordinator.progress import ProgressBar


def test_bar_renders_share_and_counts() -> None:
    bar = ProgressBar(total=200)
    line = bar.render(done=50, failed=3)
    assert line.startswith("\r[########......................]  25% 50/200 rows, 3 failed")
    assert bar.due(200)  # the last row is always drawn


@pytest.mark.parametrize(
    ("name", "content", "rows"),
    [
        ("d.csv", "a,b\n1,2\n3,4\n\n", 2),
        ("d.jsonl", '{"a": 1}\n\n{"a": 2}\n{"a": 3}\n', 3),
        ("d.json", json.dumps([{"a": i} for i in range(5)]), 5),
    ],
)
def test_count(tmp_path: Path, name: str, content: str, rows: int) -> None:
    path = tmp_path / name
    path.write_text(content)
    dataset = Dataset.open(path)
    assert dataset.count() == rows == len(list(dataset.rows()))
