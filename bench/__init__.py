"""Benchmarks of agent-endpoint: `python -m bench.invoke` (or `make bench`) prints the figures."""
