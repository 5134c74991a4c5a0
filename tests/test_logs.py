"""Log records carry trace_id, span_id and run_id; JSON or text."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry import context as context_api
from opentelemetry import trace

from app.logs import TraceContext, handler_for
from app.tracing import RUN_ID_KEY
from tests.conftest import make_settings


def formatted(log_format: str, *, run_id: str | None = None, in_span: bool = True) -> str:
    handler = handler_for(make_settings(log_format=log_format))
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger = logging.getLogger(f"tests.logs.{log_format}")
    logger.propagate = False
    logger.addHandler(handler)
    token = context_api.attach(context_api.set_value(RUN_ID_KEY, run_id)) if run_id else None
    try:
        if in_span:
            with trace.get_tracer("tests").start_as_current_span("s"):
                logger.warning("hello %s", "there")
        else:
            logger.warning("hello %s", "there")
    finally:
        if token is not None:
            context_api.detach(token)
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_lines_carry_the_ids() -> None:
    record = json.loads(formatted("json", run_id="run_7"))
    assert record["message"] == "hello there"
    assert record["level"] == "WARNING"
    assert record["logger"] == "tests.logs.json"
    assert len(record["trace_id"]) == 32
    assert len(record["span_id"]) == 16
    assert record["run_id"] == "run_7"
    assert "time" in record


def test_outside_a_request_the_ids_are_empty() -> None:
    record = json.loads(formatted("json", in_span=False))
    assert (record["trace_id"], record["span_id"], record["run_id"]) == ("", "", "")


def test_text_lines_stay_readable() -> None:
    line = formatted("text")
    assert line.rstrip().endswith("WARNING tests.logs.text: hello there")


def test_a_run_id_given_by_the_agents_logger_wins() -> None:
    record = logging.LogRecord("agent", logging.INFO, __file__, 1, "m", None, None)
    record.run_id = "from-adapter"
    assert TraceContext().filter(record)
    assert record.__dict__["run_id"] == "from-adapter"
