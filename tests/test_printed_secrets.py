"""What an agent prints goes around logging; `agent-endpoint serve` masks configured secrets in
its standard streams too (app/redaction.py, MaskedStream)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx

from app.redaction import MASK, MaskedStream, Redactor
from tests.conftest import AUTH, KEY
from tests.servers import served


def test_a_served_agents_print_never_shows_a_key(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with served(log, AGENT_ENTRYPOINT="tests.agents:printing") as url:
        response = httpx.post(f"{url}/invoke", json={"goal": "hello"}, headers=AUTH, timeout=30)
        assert response.status_code == 200, response.text
    output = log.read_text()
    assert f"careless: hello {MASK}" in output
    assert f"careless stderr: {MASK}" in output
    assert KEY not in output


def test_the_stream_masks_each_write_and_passes_the_rest_on() -> None:
    target = io.StringIO()
    stream = MaskedStream(target, Redactor(["s3cr3t-value-0123"]))
    assert stream.write("a s3cr3t-value-0123 b\n") == len("a s3cr3t-value-0123 b\n")
    stream.write("plain\n")
    assert target.getvalue() == f"a {MASK} b\nplain\n"
