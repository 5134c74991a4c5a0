"""The opt-in fast pipeline (AGENT_TRACE_PIPELINE=fast), for endpoints that answer in ms.

What it buys: on a millisecond agent, exporting over OTLP/HTTP kept 0.84x of the bare example's
throughput where the SDK pipeline kept 0.45x (README, "Benchmarks"). Three things do it: the
request span is a light span (no lock, no per-write checks of the service's own attributes:
`light_span`), it reaches the export batch as a plain tuple (`flat_span`), and spans are
encoded and sent by a child process at niceness 10 (`export_process`, AGENT_EXPORT_PROCESS,
AGENT_EXPORT_NICE), not by a thread holding the requests' GIL.

What it costs: it reaches into the SDK's batch queue (`BatchSpanProcessor._batch_processor`)
and keeps its own copy of the span's logic, which must follow the SDK (it once lost W3C's
random-trace-id flag). So `build`, its one entry point, checks for what it needs, and when an
SDK upgrade takes it away it says so in the log and the SDK pipeline runs instead.

Nothing outside this package imports its modules; `app.tracing.pipeline` imports `build` when
the setting asks for it.
"""

from app.tracing.fast.provider import build

__all__ = ["build"]
