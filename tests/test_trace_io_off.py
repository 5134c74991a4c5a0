"""AGENT_TRACE_IO=false keeps the input out of spans and logs, even where the service itself
would quote it (schema violations, placeholder warnings), and every message has a size cap."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.errors import MAX_MESSAGE_CHARS
from app.main import create_app
from tests.conftest import AUTH, METADATA, client_for, make_settings

pytestmark = pytest.mark.anyio

MARKER = "sensitive-value-7f3a"


def everything_in(span: ReadableSpan) -> str:
    """Every text the span would export: name, attributes, status, events."""
    parts: list[Any] = [span.name, dict(span.attributes or {}), span.status.description]
    parts += [(event.name, dict(event.attributes or {})) for event in span.events]
    return json.dumps(parts, default=str)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"goal": 12345, "note": MARKER}, 422, id="schema violation quoting a value"),
        pytest.param({"goal": f"a {{{{{MARKER}}}}} b"}, 200, id="placeholder inside a value"),
        pytest.param({"goal": f"{{{{{MARKER}}}}}"}, 422, id="unfilled placeholder"),
        pytest.param({"goal": f"Plan {MARKER} in Tokyo"}, 200, id="a run that succeeds"),
    ],
)
async def test_no_input_value_reaches_a_span_or_a_log_line(
    exported: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    body: dict[str, Any],
    status: int,
) -> None:
    app = create_app(make_settings(trace_io=False))
    with caplog.at_level(logging.DEBUG):
        async with client_for(app) as client:
            response = await client.post(
                "/invoke", json={**body, "arize_metadata": METADATA}, headers=AUTH
            )
    assert response.status_code == status, response.text
    spans = exported.get_finished_spans()
    assert spans
    for span in spans:
        assert MARKER not in everything_in(span)
    assert MARKER not in caplog.text
    if status != 200:
        (request_span,) = spans
        assert request_span.status.description == response.json()["error"]["type"]


async def test_with_trace_io_on_the_span_says_what_was_wrong(
    exported: InMemorySpanExporter,
) -> None:
    """The contrast: the default records the message, so the test above can fail."""
    async with client_for(create_app(make_settings())) as client:
        await client.post(
            "/invoke",
            json={"goal": 12345, "note": MARKER, "arize_metadata": METADATA},
            headers=AUTH,
        )
    (span,) = exported.get_finished_spans()
    assert MARKER in everything_in(span)


async def test_a_huge_refusal_is_capped_in_the_answer_and_the_span(
    exported: InMemorySpanExporter,
) -> None:
    """750 KB of unfilled placeholders once made a 16 MB answer and a 47 MB span."""
    goal = " ".join(f"{{{{col_{n}}}}}" for n in range(50_000))
    fields = {f"f{n}": f"{{{{col_{n}}}}}" for n in range(20_000)}
    async with client_for(create_app(make_settings(presets_file=None))) as client:
        for body, status in (({"goal": goal}, 200), (fields, 422)):
            response = await client.post(
                "/invoke", json={**body, "arize_metadata": METADATA}, headers=AUTH
            )
            assert response.status_code == status  # inside a value: data; whole values: refused
            assert len(response.content) < MAX_MESSAGE_CHARS + 500
    # input.value is cut at AGENT_TRACE_IO_MAX_CHARS (16,384); status, exception message and
    # stack trace each hold the capped message once.
    for span in exported.get_finished_spans():
        assert len(everything_in(span)) < 16_384 + 4 * MAX_MESSAGE_CHARS + 5_000
