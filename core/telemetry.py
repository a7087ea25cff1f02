"""Logging set-up for the Function App: phone numbers masked in every record, and OpenTelemetry
export to Application Insights when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the
exporter, ~0.3 s to import, is loaded only then, so cold starts without it stay small)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .logsafe import safe_text
from .masking import mask_phones_in

__all__ = ["MaskingFilter", "configure_telemetry", "log_event", "log_refusal", "run_logged"]

_log = logging.getLogger("bridge.events")
T = TypeVar("T")


def _plain(value: Any) -> Any:
    """JSON-ready, numbers masked, and every string made safe to log (``core.logsafe``)."""
    if isinstance(value, str):
        return safe_text(mask_phones_in(value), 4000)
    if isinstance(value, Mapping):
        return {safe_text(k, 100): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return safe_text(mask_phones_in(str(value)), 4000)


def log_event(name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line ``{"event": name, ...}``: the one line per timer run, webhook
    decision or refused request that operators query (numbers in string values are masked)."""
    _log.log(level, "%s", json.dumps({"event": name, **_plain(fields)}, ensure_ascii=False, sort_keys=False))


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


def run_logged(name: str, run: Callable[[], T]) -> T:
    """Run one timer job and log exactly one line for it: its report's counts, the duration, and
    the outcome (``ok``, ``partial`` when the report counts failures, ``failed`` when it raised)."""
    started = time.perf_counter()
    try:
        report = run()
    except Exception as error:
        log_event(
            name,
            level=logging.ERROR,
            outcome="failed",
            error=f"{type(error).__name__}: {str(error)[:300]}",
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        raise
    counts = _counts(report)
    declared = getattr(report, "outcome", None)  # a report that judges its own run (ok / partial / failed)
    outcome = declared if isinstance(declared, str) else ("partial" if counts.get("failed") else "ok")
    log_event(name, outcome=outcome, duration_ms=round((time.perf_counter() - started) * 1000, 1), **counts)
    return report


class MaskingFilter(logging.Filter):
    """Rewrites each record's message with phone numbers masked (a safety net under the
    app's own masking: SDK and third-party log lines pass through it too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return True
        masked = mask_phones_in(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = MaskingFilter()


def configure_telemetry(logger: logging.Logger | None = None) -> bool:
    """Mask numbers on every handler of ``logger`` (root by default); start Azure Monitor export
    when configured. Returns whether export was configured. Safe to call more than once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    if not os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(logger_name=None)
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return True
