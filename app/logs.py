"""Process logging: text for people, or one JSON object per line for log pipelines.

Every record gets `trace_id`, `span_id` (of the span current where it was logged) and `run_id`
(Arize's run), so a log line leads to its trace and its experiment row. `agent-endpoint serve`
and `app.main:app` set this up; uvicorn's own loggers go through the same handler.
"""

from __future__ import annotations

import logging
import sys

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from app.settings import Settings
from app.tracing import current_run_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message", "trace_id", "span_id", "run_id")

# Line breaks and terminal control characters, as Python escapes them; tabs stay.
_CONTROL = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
ESCAPES = {code: repr(chr(code))[1:-1] for code in _CONTROL if code != 0x09}


class OneLineFormatter(logging.Formatter):
    """The text format with control characters escaped: one line per record.

    A run id, an agent-logged value or a traceback holding a newline or an escape sequence
    cannot start a forged log line or repaint the terminal; `\\n` marks where it broke.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return line if line.isprintable() else line.translate(ESCAPES)


class TraceContext(logging.Filter):
    """Adds trace_id, span_id and run_id to every record (empty strings outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        else:
            record.trace_id = record.span_id = ""
        if not getattr(record, "run_id", None):
            record.run_id = current_run_id() or ""
        return True


def handler_for(settings: Settings) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceContext())
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                list(JSON_FIELDS),
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(OneLineFormatter(TEXT_FORMAT))
    return handler


def configure_logging(settings: Settings, *, uvicorn_loggers: bool = False) -> None:
    """One handler on the root logger.

    `uvicorn_loggers`: also route uvicorn's loggers to it (`agent-endpoint serve`, which starts
    uvicorn without its own log config). Under `uvicorn app.main:app` they stay as uvicorn's
    flags set them (`--no-access-log` stays off).
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler_for(settings))
    root.setLevel(settings.log_level.upper())
    if uvicorn_loggers:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
