"""Abuse stays quiet in the log: one line per event, and no value can forge a line."""

from __future__ import annotations

import io
import logging
import socket
import time
from pathlib import Path

import pytest

from app.logs import handler_for
from tests.conftest import KEY, make_settings
from tests.servers import served

WAIT = 20.0
DROPS = 20


def test_callers_dropping_mid_body_log_one_line_each(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    head = (
        "POST /invoke HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with served(log) as url:
        port = int(url.rsplit(":", 1)[1])
        before = len(log.read_text().splitlines())
        for _ in range(DROPS):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
                sock.sendall(head + b'{"input": {"goal": "half a bo')
        deadline = time.monotonic() + WAIT
        while log.read_text().count("disconnected while sending the body") < DROPS:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        lines = log.read_text().splitlines()[before:]
    assert len(lines) == DROPS, "\n".join(lines)
    assert all(" INFO agent_endpoint: the caller disconnected" in line for line in lines)


def format_text(message: str, *args: object, exc: bool = False) -> str:
    handler = handler_for(make_settings(log_format="text"))
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger = logging.getLogger("tests.quiet_logs")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        if exc:
            try:
                raise ValueError("line one\nline two")  # noqa: TRY301
            except ValueError:
                logger.exception(message, *args)
        else:
            logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize(
    "value",
    [
        "run_1\n2030-01-01 00:00:00,000 ERROR agent_endpoint: forged",
        "run_1\r2030-01-01 00:00:00,000 ERROR agent_endpoint: forged",
        "run_1\x1b[2K\x1b[1Gforged",
        "run_1\u2028forged",
        "run_1\x85forged",
        "run_1\x00\x7f",
    ],
)
def test_a_value_cannot_forge_a_text_log_line(value: str) -> None:
    text = format_text("run %s: placeholder warning", value)
    assert text.count("\n") == 1
    assert text.endswith("\n")
    assert len(text.splitlines()) == 1  # str.splitlines() knows every line break
    assert "\x1b" not in text
    assert "run_1\\" in text  # escaped where it was, as Python writes it


def test_a_traceback_is_one_line_too() -> None:
    text = format_text("agent raised", exc=True)
    assert text.count("\n") == 1
    assert "Traceback (most recent call last):\\n" in text
    assert "ValueError: line one\\nline two" in text


def test_ordinary_lines_and_tabs_are_unchanged() -> None:
    text = format_text("plain %s\tand a tab, naïve ✓", "text")
    assert text.endswith("WARNING tests.quiet_logs: plain text\tand a tab, naïve ✓\n")
