"""core.telemetry and core._export on their own: the logging filter (console), structured fields as
custom dimensions, and the processors that scrub spans and log records before the exporter. The
providers here are private to each test (never the global ones). End to end through the Azure
Monitor exporter: tests/test_telemetry_export.py."""

from __future__ import annotations

import io
import json
import logging

import pytest

from core.telemetry import MaskingFilter, log_event

LEAKY = "caller +358501234567 (aino.virtanen@example.fi) key=supersecretvalue01"


def _leaks(text: str) -> list[str]:
    return [s for s in ("501234567", "aino.virtanen", "supersecretvalue01") if s in text]


@pytest.fixture()
def console():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger("tests.telemetry.console")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_tracebacks_are_masked_on_the_console(console):
    logger, stream, _ = console
    try:
        raise RuntimeError(LEAKY)
    except RuntimeError:
        logger.exception("lookup of %s failed", "+358501234567x")
    text = stream.getvalue()
    assert "Traceback" in text and "RuntimeError" in text
    assert not _leaks(text), text
    assert "***@example.fi" in text and "key=***" in text and "+3585******67x" in text


def test_log_event_fields_are_custom_dimensions():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    keep.addFilter(MaskingFilter())
    events = logging.getLogger("bridge.events")
    events.addHandler(keep)
    level, events.level = events.level, logging.INFO
    try:
        log_event("sync_phone_calls", outcome="partial", parked=2, module="clash", skipped={"short": 1}, detail=LEAKY)
    finally:
        events.removeHandler(keep)
        events.setLevel(level)
    (record,) = records
    message = json.loads(record.getMessage())
    assert message["event"] == "sync_phone_calls" and message["parked"] == 2
    dims = record.__dict__
    assert (dims["event"], dims["outcome"], dims["parked"]) == ("sync_phone_calls", "partial", 2)
    assert dims["field_module"] == "clash"  # LogRecord's own attribute names are not overwritten
    assert json.loads(dims["skipped"]) == {"short": 1}
    assert not _leaks(dims["detail"]) and not _leaks(record.getMessage())


def test_json_event_lines_get_their_fields_as_dimensions(console):
    logger, _, handler = console  # the filter sets them before any handler formats or exports
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, "%s", (json.dumps({"event": "x", "status": 204}),), None
    )
    assert handler.filters[0].filter(record)
    assert (record.__dict__["event"], record.__dict__["status"]) == ("x", 204)


def test_spans_are_scrubbed_before_any_exporter():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    from core._export import ScrubbingSpanProcessor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ScrubbingSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    url = "https://org.crm4.dynamics.com/api/data/v9.2/enr_phoneindexes?$filter=enr_e164%20eq%20%27%2B358501234567%27"
    with tracer.start_as_current_span("GET +358501234567", attributes={"url.full": url, "http.url": url}) as span:
        span.set_attribute("url.query", "user=aino.virtanen%40example.fi")
        span.set_attribute("tags", ["+358501234567", "ok"])
        span.record_exception(RuntimeError(LEAKY))
        span.set_status(Status(StatusCode.ERROR, LEAKY))
    (exported,) = exporter.get_finished_spans()
    text = json.dumps(
        {
            "name": exported.name,
            "attributes": dict(exported.attributes or {}),
            "events": [dict(e.attributes or {}) for e in exported.events],
            "status": exported.status.description,
        },
        default=list,
    )
    assert not _leaks(text), text
    assert "enr_phoneindexes" in text and "exception.stacktrace" in text and "RuntimeError" in text
    provider.shutdown()


def test_log_records_are_scrubbed_before_any_exporter():
    from opentelemetry.instrumentation.logging.handler import LoggingHandler  # the one the distro installs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from core._export import ScrubbingLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(ScrubbingLogRecordProcessor())
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("tests.telemetry.otel")
    handler = LoggingHandler(logger_provider=provider)  # no MaskingFilter: the processor alone
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(LEAKY)
        except RuntimeError:
            logger.exception("failed for %s", "+358501234567", extra={"who": "aino.virtanen@example.fi"})
    finally:
        logger.removeHandler(handler)
    (finished,) = exporter.get_finished_logs()
    record = finished.log_record
    text = json.dumps({"body": record.body, "attributes": dict(record.attributes or {})}, default=str)
    assert not _leaks(text), text
    assert "exception.stacktrace" in text and "***@example.fi" in text
    provider.shutdown()
