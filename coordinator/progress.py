"""A one-line progress bar for `coordinator run`, redrawn in place on a terminal."""

from __future__ import annotations

import time

WIDTH = 30
REDRAW_SECONDS = 0.1


class ProgressBar:
    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self._drawn = 0.0

    def due(self, done: int) -> bool:
        """Redraw at most ten times a second, and always for the last row."""
        now = time.monotonic()
        if done >= self.total or now - self._drawn >= REDRAW_SECONDS:
            self._drawn = now
            return True
        return False

    def render(self, done: int, failed: int) -> str:
        share = done / self.total if self.total else 1.0
        filled = round(WIDTH * min(share, 1.0))
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%} {done}/{self.total} rows, "
            f"{failed} failed, {done / elapsed:,.0f} rows/s"
        )
