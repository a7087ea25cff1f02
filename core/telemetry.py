"""Logging set-up for the Function App: numbers, e-mail addresses and secrets masked in every
record (message, traceback and structured fields), and OpenTelemetry export to Application
Insights when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the exporter, ~0.3 s to import,
is loaded only then, so cold starts without it stay small).

What is exported is scrubbed at the source, not only in the log lines: a span processor rewrites
every span's attributes (outbound URLs with their query strings: a routing lookup's ``$filter``,
the Enreach discovery's ``?user=``), its name, status and exception events; a log record processor
rewrites each record's body and attributes (exception message and stack trace included). Both
run before the exporter's batch processors (``configure_azure_monitor(span_processors=...,
log_record_processors=...)``). See docs/deployment.md, "Telemetry", for the one-pipeline set-up.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from .masking import mask_sensitive, register_secret
from .runstatus import FinishedRun

__all__ = ["MaskingFilter", "TimerRunFailed", "configure_telemetry", "log_event", "log_refusal", "run_logged"]

_log = logging.getLogger("bridge.events")
_errors = logging.getLogger("bridge.errors")  # the stack of a failed run, as an exception record
T = TypeVar("T")


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return mask_sensitive(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask_sensitive(str(value))


# LogRecord's own attributes: a structured field by one of these names goes in as ``field_<name>``.
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _dimensions(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Structured fields as log record attributes (Application Insights custom dimensions):
    scalars as they are, anything else as JSON text; ``None`` left out."""
    dimensions: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        name = f"field_{key}" if key in _RESERVED else str(key)
        if not isinstance(value, str | bool | int | float):
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        dimensions[name] = value
    return dimensions


def log_event(name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line ``{"event": name, ...}``: the one line per timer run, webhook
    decision or refused request that operators query (numbers in string values are masked)."""
    values = {"event": name, **_plain(fields)}
    _log.log(level, "%s", json.dumps(values, ensure_ascii=False, sort_keys=False), extra=_dimensions(values))


def log_refusal(function: str, status: int, body: bytes | None) -> None:
    """A request an HTTP function refused (4xx: ``http_refused``) or could not serve (5xx:
    ``http_failed``): status, function and the app's own reason from its answer (never the
    request's body, which may hold numbers and credentials)."""
    reason, field = "", None
    try:
        answer = json.loads(body or b"null")
        if isinstance(answer, dict):
            reason, field = str(answer.get("error") or ""), answer.get("field")
    except ValueError:
        pass
    log_event(
        "http_refused" if status < 500 else "http_failed",
        level=logging.WARNING if status < 500 else logging.ERROR,
        function=function,
        status=status,
        reason=reason,
        **({"field": field} if field else {}),
    )


def _counts(report: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(report) or isinstance(report, type):
        return {}
    return {
        f.name: getattr(report, f.name)
        for f in dataclasses.fields(report)
        if isinstance(getattr(report, f.name), int | float | dict | str | type(None))
    }


class TimerRunFailed(RuntimeError):
    """A timer job raised: what the Functions host gets instead of the original exception, whose
    message may hold a vendor's answer (numbers, addresses) and which the host would report
    unmasked, outside the app's scrubbing. The original, with its stack, is logged (masked) as
    an exception record of ``bridge.errors``."""


def run_logged(
    name: str, run: Callable[[], T], *, status: Callable[[FinishedRun], None] | None = None, log: bool = True
) -> T:
    """Run one timer job and log exactly one line for it: its report's counts, the duration, and
    the outcome (``ok``, ``partial`` when the report counts failures, ``failed`` when it raised:
    then ``TimerRunFailed`` is raised, masked, so the host still records a failed run).

    ``status`` (e.g. ``core.runstatus.RunStatusWriter``) is told about the finished run, also when
    it raised; ``log=False`` for a job whose report logs its own line."""
    started, began = time.perf_counter(), datetime.now(UTC)

    def tell(outcome: str, report: Any, error: BaseException | None) -> None:
        if status is not None:
            duration = (time.perf_counter() - started) * 1000
            status(FinishedRun(name, began, datetime.now(UTC), outcome, duration, report, error))

    try:
        report = run()
    except Exception as error:
        text = mask_sensitive(f"{type(error).__name__}: {str(error)[:300]}")
        log_event(
            name,
            level=logging.ERROR,
            outcome="failed",
            error=text,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        tell("failed", None, error)
        _errors.error("%s failed", name, exc_info=error, extra={"event": name})
        raise TimerRunFailed(f"{name} failed: {text}") from None
    counts = _counts(report)
    declared = getattr(report, "outcome", None)  # a report that judges its own run (ok / partial / failed)
    outcome = declared if isinstance(declared, str) else ("partial" if counts.get("failed") else "ok")
    if log:
        log_event(name, outcome=outcome, duration_ms=round((time.perf_counter() - started) * 1000, 1), **counts)
    tell(outcome, report, None)
    return report


class MaskingFilter(logging.Filter):
    """Rewrites each record with numbers, e-mail addresses and secrets masked: the message, the
    traceback (``exc_text``, which formatters print instead of formatting ``exc_info`` again) and
    string attributes given as ``extra``. A JSON line of the app's own (``{"event": ...}``) also
    gets its top-level fields as attributes, so they are exported as custom dimensions.
    A safety net under the app's own masking: SDK and third-party lines pass through it too."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return True
        masked = mask_sensitive(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_sensitive(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_sensitive(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _RESERVED and isinstance(value, str):
                setattr(record, key, mask_sensitive(value))
        if masked.startswith('{"event": ') and "event" not in record.__dict__:
            try:
                values = json.loads(masked)
            except ValueError:
                values = None
            if isinstance(values, dict):
                for key, value in _dimensions(values).items():
                    record.__dict__.setdefault(key, value)
        return True


_FILTER = MaskingFilter()
_configured = False
# Settings whose values are credentials: masked wherever they would appear in a log or export.
SECRET_SETTINGS = (
    "AZURE_CLIENT_SECRET",
    "ENREACH_SECRET_KEY",
    "ENREACH_WEBHOOK_SECRET",
    "ROUTING_API_KEY",
    "ROUTING_BASIC_PASSWORD",
    "PRESENCE_WEBHOOK_KEY",
)
# The exporter's and the SDK's own loggers: never exported (a log line about a transmission would
# be transmitted, and so on), and quiet below WARNING.
_SDK_LOGGERS = ("azure.monitor.opentelemetry", "opentelemetry", "azure.core.pipeline.policies.http_logging_policy")


def _register_secrets() -> None:
    for name in SECRET_SETTINGS:
        register_secret(os.environ.get(name))
    for part in (os.environ.get("AzureWebJobsStorage") or "").split(";"):
        if part.lower().startswith("accountkey="):
            register_secret(part.split("=", 1)[1])


class _NotTheSdk(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(_SDK_LOGGERS[:2])


def _attach_filters(target: logging.Logger) -> None:
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)


def configure_telemetry(logger: logging.Logger | None = None) -> bool:
    """Mask numbers, addresses and secrets on every handler of ``logger`` (root by default); start
    Azure Monitor export when configured, scrubbed at the source. Returns whether export is on.
    Safe to call more than once: the exporter is set up once per process."""
    global _configured
    target = logger or logging.getLogger()
    _register_secrets()
    _attach_filters(target)
    for name in _SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if _configured:
        return True
    if not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    from . import _export

    _export.start(target)
    for handler in target.handlers:
        if type(handler).__name__ == "LoggingHandler" and not any(isinstance(f, _NotTheSdk) for f in handler.filters):
            handler.addFilter(_NotTheSdk())
    _attach_filters(target)
    from . import metrics

    metrics.enable()
    _configured = True
    return True
