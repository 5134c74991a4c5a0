"""Configured secrets are masked whole, whatever their order and overlaps."""

from __future__ import annotations

import pytest

from app.redaction import MASK, Redactor

SHORT = "k" * 16
LONG = SHORT + "-with-a-longer-tail"


@pytest.mark.parametrize("order", [[SHORT, LONG], [LONG, SHORT]], ids=["short first", "long first"])
def test_a_secret_inside_another_is_masked_whole(order: list[str]) -> None:
    """Masking the shorter one first would leave `-with-a-longer-tail` of the longer one."""
    redact = Redactor(order)
    assert redact(f"a={LONG} b={SHORT}") == f"a={MASK} b={MASK}"


def test_empty_secrets_are_ignored() -> None:
    assert Redactor(["", SHORT])(f"x {SHORT} y") == f"x {MASK} y"
    assert Redactor([""])("unchanged") == "unchanged"
