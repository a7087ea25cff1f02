"""The bridge's OpenTelemetry meters (exported to Application Insights as customMetrics).

Each function is one line at its call site and does nothing until ``enable()`` (called by
``core.telemetry.configure_telemetry`` when export is on): with telemetry off nothing is
imported and a call costs one test of a flag. Instruments are created on first use.

Attribute values come from small closed vocabularies (outcomes, directions, service names,
HTTP statuses): never a number, an address or an id. The alerts and the workbook in infra/
query these names; change them together.

| instrument | kind | unit | attributes |
|---|---|---|---|
| ``bridge.routing.decisions`` | counter | 1 | ``outcome``: target, no_match, fallback_failure/_budget, refused |
| ``bridge.routing.duration`` | histogram | ms | ``outcome`` |
| ``bridge.calls`` | counter | 1 | ``result``: synced, parked, review, failed |
| ``bridge.presence.writes`` | counter | 1 | ``direction``: to_enreach, to_omnichannel |
| ``bridge.presence.echoes_dropped`` | counter | 1 | |
| ``bridge.presence.refused`` | counter | 1 | ``status``: the HTTP status answered (e.g. 503) |
| ``bridge.throttled`` | counter | 1 | ``service``: dataverse, enreach (each 429 received) |
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = [
    "INSTRUMENTS",
    "call_results",
    "enable",
    "enabled",
    "presence_echo_dropped",
    "presence_refused",
    "presence_write",
    "routing_decision",
    "throttled",
]

# name -> (kind, unit, description)
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "bridge.routing.decisions": ("counter", "1", "routing webhook answers, by outcome"),
    "bridge.routing.duration": ("histogram", "ms", "time to decide a routing call, by outcome"),
    "bridge.calls": ("counter", "1", "phone calls handled by the call sync, by result"),
    "bridge.presence.writes": ("counter", "1", "presence changes written, by direction"),
    "bridge.presence.echoes_dropped": ("counter", "1", "presence notifications recognised as the bridge's own echo"),
    "bridge.presence.refused": ("counter", "1", "presence webhooks refused, by HTTP status"),
    "bridge.throttled": ("counter", "1", "HTTP 429 answers received, by service"),
}
CALL_RESULTS = ("synced", "parked", "review", "failed")
_WORD = re.compile(r"[a-z][a-z0-9_]{0,39}")

_enabled = False
_lock = threading.Lock()
_instruments: dict[str, Any] = {}


def enable() -> None:
    """Start recording (the global MeterProvider is the one the exporter set up)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    return _enabled


def _label(value: object) -> str:
    """An attribute value from a closed vocabulary: a lower-case word or an HTTP status, else ``other``."""
    text = str(value).lower()
    if _WORD.fullmatch(text) or (text.isdigit() and len(text) == 3):
        return text
    return "other"


def _instrument(name: str) -> Any:
    found = _instruments.get(name)
    if found is not None:
        return found
    with _lock:
        if name not in _instruments:
            from opentelemetry import metrics

            kind, unit, description = INSTRUMENTS[name]
            meter = metrics.get_meter("bridge")
            create = meter.create_histogram if kind == "histogram" else meter.create_counter
            _instruments[name] = create(name, unit=unit, description=description)
        return _instruments[name]


def _add(name: str, amount: float = 1, **attributes: object) -> None:
    if not _enabled or amount <= 0:
        return
    try:
        _instrument(name).add(amount, {k: _label(v) for k, v in attributes.items()})
    except Exception:  # noqa: S110 - telemetry never breaks the job it watches
        pass


def routing_decision(outcome: str, duration_ms: float | None) -> None:
    """One routing webhook answer: ``target``, ``no_match``, ``fallback_failure`` (the lookup
    failed: 204), ``fallback_budget`` (out of time or capacity: 204) or ``refused`` (4xx, no
    duration)."""
    if not _enabled:
        return
    _add("bridge.routing.decisions", outcome=outcome)
    if duration_ms is None:
        return
    try:
        _instrument("bridge.routing.duration").record(max(0.0, float(duration_ms)), {"outcome": _label(outcome)})
    except Exception:  # noqa: S110 - as in _add
        pass


def call_results(**counts: int) -> None:
    """A call sync run's calls by result (``synced=``, ``parked=``, ``review=``, ``failed=``)."""
    for result, count in counts.items():
        _add("bridge.calls", count, result=result)


def presence_write(direction: str) -> None:
    """One presence written: ``to_enreach`` or ``to_omnichannel``."""
    _add("bridge.presence.writes", direction=direction)


def presence_echo_dropped() -> None:
    _add("bridge.presence.echoes_dropped")


def presence_refused(status: int) -> None:
    """A presence webhook answered with an error status (a 503 asks the sender to deliver again)."""
    _add("bridge.presence.refused", status=status)


def throttled(service: str) -> None:
    """One 429 received from ``dataverse`` or ``enreach``."""
    _add("bridge.throttled", service=service)
