"""Logging set-up for the Function App: phone numbers masked in every record, and OpenTelemetry
export to Application Insights when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the
exporter, ~0.3 s to import, is loaded only then, so cold starts without it stay small)."""

from __future__ import annotations

import logging
import os

from .masking import mask_phones_in

__all__ = ["MaskingFilter", "configure_telemetry"]


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
