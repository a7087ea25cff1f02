"""Azure Monitor export, scrubbed at the source (imported only when export is configured: the
OpenTelemetry SDK and the exporter cost ~0.3 s to import).

``ScrubbingSpanProcessor`` and ``ScrubbingLogRecordProcessor`` are registered before the
exporter's batch processors, and every processor after them (the exporter, live metrics,
performance counters) sees the scrubbed span or record: the processors of a provider get the
same object in turn, so rewriting it in ``on_end`` / ``on_emit`` is what the later ones read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.trace import Status

from .masking import mask_sensitive

__all__ = ["ScrubbingLogRecordProcessor", "ScrubbingSpanProcessor", "scrub_attributes", "start"]

_log = logging.getLogger(__name__)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_sensitive(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return tuple(_scrub_value(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _scrub_value(v) for k, v in value.items()}
    return value


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every string value masked (URLs with their query strings, exception messages and stack
    traces, anything an instrumentation recorded)."""
    return {key: _scrub_value(value) for key, value in (attributes or {}).items()}


class ScrubbingSpanProcessor(SpanProcessor):
    """Masks numbers, e-mail addresses and secrets in each ended span before it is exported:
    attributes (``http.url``, ``url.full``, ``url.query``, ``db.statement``, ...), name, status
    description and events (``exception`` events carry the message and the stack trace)."""

    def on_end(self, span: ReadableSpan) -> None:
        try:
            span._attributes = scrub_attributes(span.attributes)
            span._events = tuple(
                Event(event.name, scrub_attributes(event.attributes), event.timestamp) for event in span.events
            )
            span._name = mask_sensitive(span.name)
            if span.status.description:
                span._status = Status(span.status.status_code, mask_sensitive(span.status.description))
        except Exception:  # never break the caller; drop what could not be scrubbed instead
            span._attributes = {}
            span._events = ()


class ScrubbingLogRecordProcessor(LogRecordProcessor):
    """Masks each log record's body and attributes (``exception.message``, ``exception.stacktrace``,
    custom dimensions) before it is exported: the OpenTelemetry logging handler formats the
    traceback from ``exc_info`` itself, past the logging filter's masked ``exc_text``."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        if isinstance(record.body, str):
            record.body = mask_sensitive(record.body)
        elif record.body is not None:
            record.body = _scrub_value(record.body)
        if record.attributes:
            for key, value in list(record.attributes.items()):
                scrubbed = _scrub_value(value)
                if scrubbed != value:
                    record.attributes[key] = scrubbed  # type: ignore[index]

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _worker_exports() -> bool:
    """The Python worker configures Azure Monitor itself when this app setting is true."""
    return os.environ.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "").strip().lower() == "true"


def start(target: logging.Logger) -> None:
    """Azure Monitor export of traces, logs (from ``target``) and metrics, scrubbed at the source."""
    on_functions = bool(os.environ.get("FUNCTIONS_WORKER_RUNTIME"))
    if on_functions and os.environ.get("PYTHON_ENABLE_OPENTELEMETRY", "").strip().lower() != "true":
        _log.warning(
            "PYTHON_ENABLE_OPENTELEMETRY is not true: the Functions host also forwards the app's log lines, "
            "so each is stored twice; set it to true (docs/deployment.md, Telemetry)"
        )
    if _worker_exports():
        # The worker already set up its own pipeline, without these processors: a second one
        # would send every line twice. Scrub what it sends (best effort) and say how to fix it.
        from opentelemetry import _logs, trace

        add_span = getattr(trace.get_tracer_provider(), "add_span_processor", None)
        add_log = getattr(_logs.get_logger_provider(), "add_log_record_processor", None)
        if add_span:
            add_span(ScrubbingSpanProcessor())
        if add_log:
            add_log(ScrubbingLogRecordProcessor())
        _log.warning(
            "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true: the worker exports without the app's scrubbing "
            "processors first in line; set it to false and PYTHON_ENABLE_OPENTELEMETRY=true (docs/deployment.md)"
        )
        return
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(
        logger_name=target.name if target.name != "root" else "",
        span_processors=[ScrubbingSpanProcessor()],
        log_record_processors=[ScrubbingLogRecordProcessor()],
        # Web frameworks and databases the app does not use; requests/urllib/azure_sdk stay on.
        instrumentation_options={name: {"enabled": False} for name in ("django", "fastapi", "flask", "psycopg2")},
    )
