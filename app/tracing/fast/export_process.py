"""The fast pipeline's span export in a child process, off the requests' GIL.

Encoding a span to OTLP protobuf costs the SDK's exporter about 36 µs of pure Python, in a
thread that holds the GIL while the event loop waits; on a busy endpoint that was half of what
tracing cost per request (see the README's benchmarks). So the service's batch thread only
flattens finished spans into plain tuples and pickles them down a pipe to
`python -m app.tracing.fast.export_process`, which rebuilds them and runs the exporting
processors chosen by the settings there: secret masking, OTLP, console, Arize routing, each
batching on its own.

The child starts with the first batch, shuts down (flushing) when the service does, and if it
dies the service logs it once and drops spans rather than slow requests down.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from app.settings import Settings
from app.tracing.fast.flat_span import RESOURCE, Flat, flatten, rebuild

log = logging.getLogger("agent_endpoint")

HEADER = struct.Struct("!I")
ACK = b"\x01"
FLUSH_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0  # shutdown waits this long for the child to flush, then kills it
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s (export process): %(message)s"
# The SDK's batch queue logs each span it drops when full (a collector down, or the export
# process behind); the exporters' own warnings ("Transient error ... retrying") say what is
# wrong. A logger name, not an import: if it moves, the warnings come back, nothing breaks.
SDK_BATCH_LOGGER = "opentelemetry.sdk._shared_internal"


def packed(spans: Sequence[ReadableSpan | Flat]) -> tuple[list[dict[str, Any]], list[Flat]]:
    """A batch as flat spans, each resource's attributes once in a table the spans index."""
    resources: dict[int, int] = {}
    table: list[dict[str, Any]] = []
    batch = []
    for span in spans:
        flat = span if isinstance(span, tuple) else flatten(span)
        resource: Resource = flat[RESOURCE]
        index = resources.get(id(resource))
        if index is None:
            index = resources[id(resource)] = len(table)
            table.append(dict(resource.attributes))
        batch.append((*flat[:RESOURCE], index))
    return table, batch


def _write(stream: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    return pickle.loads(stream.read(size))  # noqa: S301 - our own parent, over our own pipe


class ExportProcess(SpanExporter):
    """The service's side: ships batches to the child, which it starts on first use."""

    def __init__(self, settings: Settings, secrets: Sequence[str]) -> None:
        self._config = (settings, list(secrets))
        self._child: subprocess.Popen[bytes] | None = None
        self._acks = -1  # read end of the pipe the child acknowledges flushes on
        self._lock = threading.Lock()
        self._failed = False

    def _start(self) -> subprocess.Popen[bytes]:
        # Its own pipe for acknowledgements: the child's stdout stays the service's (console).
        self._acks, ack_fd = os.pipe()
        try:
            child = subprocess.Popen(  # noqa: S603 - this interpreter, this module
                [sys.executable, "-m", "app.tracing.fast.export_process", str(ack_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(ack_fd,),
            )
        finally:
            os.close(ack_fd)
        assert child.stdin is not None  # noqa: S101 - PIPE above
        _write(child.stdin, self._config)
        return child

    def _send(self, message: object) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._failed:
                return None
            try:
                if self._child is None:
                    self._child = self._start()
                assert self._child.stdin is not None  # noqa: S101 - PIPE in _start
                _write(self._child.stdin, message)
            except OSError as exc:
                self._failed = True
                log.error(  # noqa: TRY400 - one line, not a traceback per batch
                    "span export process is gone (%s); spans are dropped from now on", exc
                )
                return None
            return self._child

    def export(self, spans: Sequence[ReadableSpan | Flat]) -> SpanExportResult:
        """Ship a batch: SDK spans and the request spans' flat tuples (`ShippedBatches.ship`)."""
        if self._send(("spans", *packed(spans))) is None:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._child is None:
            return True
        if self._send(("flush",)) is None:
            return False
        ready, _, _ = select.select([self._acks], [], [], min(timeout_millis / 1000, FLUSH_TIMEOUT))
        return bool(ready) and os.read(self._acks, 1) == ACK

    def shutdown(self) -> None:
        with self._lock:
            child, self._child = self._child, None
            self._failed = True
        if child is None:
            return
        assert child.stdin is not None  # noqa: S101 - PIPE in _start
        try:
            child.stdin.close()  # end of input: the child flushes its exporters and exits
            child.wait(STOP_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("span export process did not stop cleanly (%s); killing it", exc)
            child.kill()
            child.wait()
        finally:
            os.close(self._acks)


class ShippedBatches(SpanProcessor):
    """The SDK's batching in the service; a flush also flushes the child's exporters.

    `ship` is the batch processor's own queue (`BatchSpanProcessor._batch_processor.emit`,
    opentelemetry-sdk 1.34+): the request span (`light_span`), already flat, joins the same
    batches without becoming a ReadableSpan. `provider.build` finds it, or turns the fast
    pipeline off when this SDK version has no such queue.
    """

    def __init__(
        self, batch: SpanProcessor, exporter: ExportProcess, ship: Callable[[Flat], None]
    ) -> None:
        self.batch = batch
        self.shipper = exporter
        self.ship = ship

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.batch.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.batch.on_end(span)

    def shutdown(self) -> None:
        self.batch.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # The SDK's BatchSpanProcessor does not ask its exporter to flush.
        return self.batch.force_flush(timeout_millis) and self.shipper.force_flush(timeout_millis)


def serve(source: IO[bytes], ack_fd: int) -> None:
    """The child: rebuild spans and hand them to the exporting processors."""
    from app.redaction import Redactor  # noqa: PLC0415
    from app.tracing.exporters import exporting_processors, secret_headers  # noqa: PLC0415
    from app.tracing.processors import Scrubbed  # noqa: PLC0415

    config = _read(source)
    if config is None:
        return
    settings, secrets = config
    if settings.export_nice:
        os.nice(settings.export_nice)  # export is background work: requests come first
    logging.getLogger(SDK_BATCH_LOGGER).setLevel(logging.ERROR)  # as in the service
    redact = Redactor(secrets)
    processors: list[SpanProcessor] = [
        Scrubbed(processor, redact, secret_headers(settings))
        for processor in exporting_processors(settings)
    ]
    try:
        while (message := _read(source)) is not None:
            if message[0] == "spans":
                _, table, batch = message
                resources = [Resource(attributes) for attributes in table]
                for flat in batch:
                    span = rebuild(flat, resources)
                    for processor in processors:
                        processor.on_end(span)
            elif message[0] == "flush":
                for processor in processors:
                    processor.force_flush()
                os.write(ack_fd, ACK)
    finally:
        for processor in processors:
            processor.shutdown()


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the child stops when the service closes its
    # input (or dies), after flushing, never halfway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    serve(sys.stdin.buffer, int(sys.argv[1]))
