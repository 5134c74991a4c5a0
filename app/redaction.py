"""Keeping configured secrets out of anything that leaves the process."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from typing import TextIO

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


class MaskedStream(io.TextIOBase):
    """A text stream that masks configured secrets in what is written to it.

    An agent's own `print` (or a library that writes to stdout/stderr) goes around logging, so
    `agent-endpoint serve` and `worker` put their standard streams behind this. Each `write`
    is masked whole: a secret written in pieces (a character per call) is not recognised, so
    keep secrets out of what the agent prints.
    """

    def __init__(self, stream: TextIO, redact: Redactor) -> None:
        super().__init__()
        self._stream = stream
        self._redact = redact

    def write(self, text: str) -> int:
        self._stream.write(self._redact(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding


def mask_standard_streams(secrets: Iterable[str]) -> None:
    """Mask `secrets` in everything this process prints (once: a second call changes nothing)."""
    redact = Redactor(secrets)
    if not redact.secrets:
        return
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, MaskedStream):
            setattr(sys, name, MaskedStream(stream, redact))
