"""Keeping configured secrets out of anything that leaves the process."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[redacted]"


class Redactor:
    """Replaces every configured secret value in a text with a mask."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a key that contains another is masked whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
