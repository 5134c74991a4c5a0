"""Arize's own `public.Record` message, the oracle for every record the service pushes.

Arize's client posts `MessageToDict(record, preserving_proto_field_name=True)` of this message
to the log API, so a record is one Arize can read exactly when `json_format.Parse` accepts it
(unknown fields refused). The tests get the message from the `arize` distribution
(`requirements/arize.lock`), loading the generated `public_pb2.py` by file path rather than
importing `arize`:

- `arize/__init__.py` imports pandas, pyarrow and numpy; the tests need one generated module,
  so the lock installs arize without its dependencies and nothing runs its `__init__`.
- `make install` puts it in `.venv/arize-schema`, off the import path: in site-packages its
  `arize/__init__.py` would turn arize-otel's namespace package `arize` into a regular package,
  and `from arize.otel import ...` (the app's Arize exporter) would run that `__init__` and fail.
- arize pins `protobuf<7`, our locks pin protobuf 7.x; the generated code of arize 8.61.0 was
  checked to load and parse under protobuf 7 (and `test_log_api` fails loudly if it stops).

protobuf ships no type information (and types-protobuf is not in our locks), so its modules are
imported here as `Any`, once, rather than silencing mypy for the package everywhere.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

json_format: Any = importlib.import_module("google.protobuf.json_format")
FieldDescriptor: Any = importlib.import_module("google.protobuf.descriptor").FieldDescriptor
Message: Any = importlib.import_module("google.protobuf.message").Message

GENERATED = Path("_generated", "protocol", "rec", "public_pb2.py")
INSTALLED = Path(sys.prefix, "arize-schema")  # pip install --target, by `make install`


@cache
def public_pb2() -> ModuleType:
    """The generated module, loaded from the installed arize without running its __init__."""
    spec = importlib.machinery.PathFinder.find_spec("arize", [str(INSTALLED)])
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"arize is not in {INSTALLED}: run `make install` (requirements/arize.lock)"
        )
    path = Path(next(iter(spec.submodule_search_locations)), GENERATED)
    name = "_arize_public_pb2"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"cannot load {path}: is arize 8.61.0 installed?")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def record_descriptor() -> Any:
    """The `google.protobuf.descriptor.Descriptor` of `public.Record`."""
    return public_pb2().Record.DESCRIPTOR


def parse_record(record: str | bytes | dict[str, Any]) -> Any:
    """The record as Arize's `Record`; `json_format.ParseError` if Arize's schema refuses it."""
    text = record if isinstance(record, str | bytes) else json.dumps(record)
    return json_format.Parse(text, public_pb2().Record(), ignore_unknown_fields=False)


def verdict(record: str | bytes | dict[str, Any]) -> str | None:
    """None if Arize's schema accepts the record, else protobuf's reason."""
    try:
        parse_record(record)
    except (json_format.ParseError, UnicodeDecodeError) as refusal:
        return str(refusal)
    return None
