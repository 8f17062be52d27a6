"""The spans a test's code ends, and those it left open, from the process's real tracer provider.

``span_recorder()`` makes sure the provider ``configure_tracing`` sets up (no exporter: the
``OTEL_*`` variables of a test run name no endpoint) exists, and adds one recorder to it: the
SDK's ``InMemorySpanExporter`` for the ended spans, plus the spans started and not yet ended.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from homework_shared.observability import configure_tracing


class SpanRecorder(SpanProcessor):
    """Ended spans (through the SDK's in-memory exporter) and the ids of spans still open."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self._export = SimpleSpanProcessor(self.exporter)
        self._open: dict[int, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        with self._lock:
            self._open[span.context.span_id] = (span.context.trace_id, span.name)

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            assert span.context is not None
            self._open.pop(span.context.span_id, None)
        self._export.on_end(span)

    def ended(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def open_spans(self, trace_id: int | None = None) -> list[str]:
        """Names of spans started and not ended (of one trace, if given)."""
        with self._lock:
            return [name for tid, name in self._open.values() if trace_id is None or tid == trace_id]

    def clear(self) -> None:
        self.exporter.clear()

    def shutdown(self) -> None:
        self._export.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_recorder: SpanRecorder | None = None


def span_recorder() -> SpanRecorder:
    """The process's one recorder on the real tracer provider (set up on first use)."""
    global _recorder
    if _recorder is None:
        configure_tracing("test")
        provider: Any = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider), "tracing is disabled (OTEL_SDK_DISABLED?)"
        _recorder = SpanRecorder()
        provider.add_span_processor(_recorder)
    return _recorder
