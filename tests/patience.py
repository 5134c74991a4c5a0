"""Bounds for the tests' waits on conditions, scaled to how busy the machine is.

A wait polls for its condition and gives up at a bound. On a machine whose cores are shared
with other work (CI runners, a laptop building something), processes start and answer several
times slower: a bound that fits an idle machine would fail there although nothing is wrong. So
every bound is its idle value times the load per core (the last minute's load average over the
cores, at least 1).
"""

from __future__ import annotations

import os


def scaled(seconds: float) -> float:
    """`seconds` on an idle machine; more on a busy one."""
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * max(1.0, per_core)
