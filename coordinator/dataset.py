"""Reading a dataset row by row: CSV (header row), JSONL, or a JSON array of objects.

Rows are streamed, never loaded whole, so a dataset of millions of rows runs in flat memory.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson

Row = dict[str, Any]


class DatasetError(ValueError):
    """The dataset cannot be read; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class Dataset:
    path: Path
    kind: str  # "csv", "jsonl" or "json"

    @classmethod
    def open(cls, path: Path) -> Dataset:
        suffix = path.suffix.lower()
        kinds = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
        if suffix not in kinds:
            raise DatasetError(
                f"{path}: unknown dataset type {suffix!r}; use .csv, .jsonl or .json"
            )
        if not path.is_file():
            raise DatasetError(f"{path}: no such file")
        return cls(path, kinds[suffix])

    def columns(self) -> list[str]:
        """The CSV header, or the keys of the first JSON row."""
        if self.kind == "csv":
            with self.path.open(newline="", encoding="utf-8") as handle:
                return next(csv.reader(handle), [])
        first = next(iter(self.rows()), None)
        return list(first) if first else []

    def count(self) -> int:
        """How many rows there are, read as a stream (for the progress bar; a CSV value with
        a line break in it counts twice, which only makes the bar finish early)."""
        if self.kind == "json":
            return sum(1 for _ in self.rows())
        with self.path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return lines - 1 if self.kind == "csv" else lines

    def rows(self) -> Iterator[Row]:
        if self.kind == "csv":
            yield from self._csv_rows()
        elif self.kind == "jsonl":
            yield from self._jsonl_rows()
        else:
            yield from self._json_rows()

    def _csv_rows(self) -> Iterator[Row]:
        with self.path.open(newline="", encoding="utf-8") as handle:
            yield from csv.DictReader(handle)

    def _jsonl_rows(self) -> Iterator[Row]:
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{self.path}:{number}: not JSON ({exc.msg})") from None
                yield self._object(row, number)

    def _json_rows(self) -> Iterator[Row]:
        with self.path.open("rb") as handle:
            start = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
            if start != b"[":
                raise DatasetError(
                    f"{self.path}: not a JSON array of objects (it starts with {start!r})"
                )
            handle.seek(0)
            try:
                for number, row in zip(
                    itertools.count(1), ijson.items(handle, "item", use_float=True), strict=False
                ):
                    yield self._object(row, number)
            except ijson.JSONError as exc:
                raise DatasetError(f"{self.path}: not a JSON array of objects ({exc})") from None

    def _object(self, row: Any, number: int) -> Row:
        if not isinstance(row, dict):
            raise DatasetError(f"{self.path}: row {number} is not a JSON object")
        return row
