"""Schemathesis over the app's own OpenAPI document, against a live server: never a 5xx.

Generated bodies follow the envelope and the agent's input schema (positive cases reach the
example agent) and break them (negative cases must be refused with a 4xx, not crash). Every
default check runs: status codes, content types and bodies must match the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from app.main import create_app
from tests.conftest import AUTH, make_settings
from tests.live import live_server

app = create_app(make_settings())
schema = schemathesis.openapi.from_dict(app.openapi())


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with live_server(app) as url:
        yield url


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Case[Any], base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTH)
