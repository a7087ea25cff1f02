"""Webhook notifications (Enreach -> us), read through the mapping (``EventMap``).

Enreach support configures the endpoint, its ``Secret`` and the subscribed ``EventType`` s
(doc.enreachvoice.com/webhooks). The body is an envelope (``Id, Timestamp, RootEntityType,
RootEntityId, EntityType, EntityId, EventType``; third-party parsers, UNVERIFIED); extra fields
are tolerated. The names the web phone's JavaScript plugin uses (``call-incoming``,
``user-status-changed``) are not webhook event types and mean nothing here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._mapping import EventMap, first_present

__all__ = ["EnreachEvent", "EventError", "IgnoredEvent", "parse_event"]

log = logging.getLogger("enreach.events")
_reported: set[str] = set()
_reported_lock = threading.Lock()


class EventError(ValueError):
    """A notification could not be read; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class EnreachEvent:
    kind: str  # "call_start", "call_end" or "availability" (read the user's current availability)
    user_id: str
    call_id: str | None = None
    event_type: str = ""
    event_id: str | None = None


@dataclass(frozen=True)
class IgnoredEvent:
    """A well-formed notification the app does not act on (answered 202)."""

    event_type: str
    reason: str


def _text(payload: Mapping[str, Any], names: tuple[str, ...], limit: int, *, numbers: bool = True) -> str | None:
    name, value = first_present(payload, names)
    if name is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool) or (isinstance(value, int) and not numbers):
        raise EventError(name, f"{name} must be a string")
    text = str(value).strip()
    if not text or len(text) > limit or not text.isprintable():
        raise EventError(name, f"{name} must be a printable string of at most {limit} characters")
    return text


def _report_once(event_type: str, payload: Mapping[str, Any], reason: str) -> None:
    with _reported_lock:
        if event_type in _reported or len(_reported) > 200:
            return
        _reported.add(event_type)
    log.warning(
        "Enreach notification %r not acted on (%s); its fields: %s",
        event_type,
        reason,
        ", ".join(sorted(str(k)[:40] for k in payload)[:40]),
    )


def parse_event(payload: Any, names: EventMap = EventMap()) -> EnreachEvent | IgnoredEvent:
    """The app's reading of one notification. Raises ``EventError`` (-> 400) for a malformed one."""
    if not isinstance(payload, Mapping):
        raise EventError("body", "the notification must be a JSON object")
    event_type = _text(payload, names.event_type, 100, numbers=False)
    if event_type is None:
        raise EventError(names.event_type[0], f"{names.event_type[0]} is missing")
    kind = names.kind_of(event_type)
    if kind is None:
        reason = (
            "its EventType is not mapped: add it to ENREACH_FIELD_MAP.events "
            "(call_start, call_end or availability_changed)"
        )
        _report_once(event_type, payload, reason)
        return IgnoredEvent(event_type, reason)
    if kind == "call_start" and not names.call_end:
        reason = "no call-end EventType is mapped (ENREACH_FIELD_MAP.events.call_end): DND would never be lifted"
        _report_once(event_type, payload, reason)
        return IgnoredEvent(event_type, reason)
    user_id = _text(payload, names.user_id, 64)
    if user_id is None:
        raise EventError(names.user_id[0], "the notification names no user: one of " + ", ".join(names.user_id))
    call_id = None
    if kind in ("call_start", "call_end"):
        call_id = _text(payload, names.call_id, 128)
        if call_id is None:
            raise EventError(names.call_id[0], "a call notification needs one of " + ", ".join(names.call_id))
    event_id = _text(payload, names.event_id, 128)
    return EnreachEvent(kind, user_id, call_id=call_id, event_type=event_type, event_id=event_id)
