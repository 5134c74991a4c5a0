"""Tracing, by concern; the names the rest of the service imports are re-exported here.

- `request`: the request span: continue the caller's trace, route to its Arize space, tag
  the run; `trace_headers()` for outbound calls.
- `pipeline`: the tracer provider, chosen by AGENT_TRACE_PIPELINE: the SDK's (default) or
  the opt-in `fast` one, which steps aside when the SDK no longer has what it needs.
- `exporters`: the span exporters OTEL_TRACES_EXPORTER chooses.
- `processors`: the service's span processors: run ids, masking, the Arize space allow-list.
- `fast/`: the opt-in pipeline; nothing imports it but `pipeline`, through `fast.build`.
"""

from app.tracing.pipeline import build_tracer_provider, install_tracer_provider
from app.tracing.request import (
    INPUT_ENCODER,
    RUN_ID_KEY,
    RequestSpan,
    Tracing,
    current_run_id,
    instrument_fastapi,
    trace_headers,
)

__all__ = [
    "INPUT_ENCODER",
    "RUN_ID_KEY",
    "RequestSpan",
    "Tracing",
    "build_tracer_provider",
    "current_run_id",
    "install_tracer_provider",
    "instrument_fastapi",
    "trace_headers",
]
