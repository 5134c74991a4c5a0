"""Reading datasets row by row from CSV, JSONL and JSON arrays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.dataset import Dataset, DatasetError

ROWS = [{"input": "Plan Tokyo", "expected": "yes"}, {"input": "Plan Lisbon", "expected": "no"}]


def write_dataset(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"rows.{kind}"
    if kind == "csv":
        path.write_text(
            "input,expected\n" + "".join(f"{r['input']},{r['expected']}\n" for r in ROWS)
        )
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")
    else:
        path.write_text(json.dumps(ROWS))
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "json"])
def test_rows_and_columns(tmp_path: Path, kind: str) -> None:
    dataset = Dataset.open(write_dataset(tmp_path, kind))
    assert dataset.columns() == ["input", "expected"]
    assert list(dataset.rows()) == ROWS


def test_json_values_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "typed.jsonl"
    path.write_text(json.dumps({"n": 1.5, "flag": True, "tags": ["a"]}) + "\n")
    assert list(Dataset.open(path).rows()) == [{"n": 1.5, "flag": True, "tags": ["a"]}]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows.txt", "x", "unknown dataset type '.txt'"),
        ("rows.jsonl", '{"a": 1}\n{broken\n', "rows.jsonl:2: not JSON"),
        ("rows.jsonl", "[1, 2]\n", "row 1 is not a JSON object"),
        ("rows.json", '{"a": 1}', "not a JSON array of objects"),
        ("rows.json", "[1]", "row 1 is not a JSON object"),
    ],
    ids=["unknown type", "broken line", "array line", "object not array", "array of numbers"],
)
def test_unreadable_datasets(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message.replace("[", r"\[").replace(".", r"\.")):
        list(Dataset.open(path).rows())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        Dataset.open(tmp_path / "nope.csv")
