"""Webhook notifications (Enreach -> us), read through the mapping (``EventMap``).

Enreach support configures the endpoint, its ``Secret`` and the subscribed ``EventType`` s
(doc.enreachvoice.com/webhooks). No public source shows an Enreach Voice webhook body, so one
reader takes the shapes that are plausible (all UNVERIFIED, ``enreach-api.md``):

* the envelope ``Id, Timestamp, RootEntityType, RootEntityId, EntityType, EntityId, EventType``
  (from a parser for HeroBase, another Enreach product);
* a flat body: the event's own fields at the top (``{"EventType": "UserCallInComing", "UserId":
  ..., "CallId": ..., "callerNumber": ...}``), the names of the real-time API being candidates;
* either with the event's own fields nested in an object named in ``EventMap.payload``.

``read_notification`` is that reader, shared by every job that takes notifications on the endpoint
(dispatch by event type); ``parse_event`` is the presence sync's reading of one. Every id that may
go into a URL path must be id-shaped (``..`` or ``/`` is a 400 naming the field). The first
notification of each type nobody acts on is logged once with its whole shape: field names and
value types, never values. The names the web phone's JavaScript plugin uses (``call-incoming``,
``user-status-changed``) are not webhook event types and mean nothing here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.logsafe import safe_text, shape

from ._client import is_id, parse_time
from ._mapping import EventMap, first_present

__all__ = [
    "EnreachEvent",
    "EventError",
    "IgnoredEvent",
    "Notification",
    "parse_event",
    "read_notification",
    "report_unmapped",
]

log = logging.getLogger("enreach.events")
_reported: set[str] = set()
_reported_lock = threading.Lock()


class EventError(ValueError):
    """A notification could not be read; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Notification:
    """One notification body as read: its type, its fields (the top level, then those of a nested
    payload object), its id and when it happened (UTC; None when the body says nothing)."""

    event_type: str
    fields: Mapping[str, Any]
    event_id: str | None = None
    timestamp: datetime | None = None

    def text(self, names: tuple[str, ...], limit: int = 128) -> str | None:
        """The first of ``names`` present, as printable text (``EventError`` otherwise)."""
        return _text(self.fields, names, limit)

    def id(self, names: tuple[str, ...]) -> str | None:
        """The first of ``names`` present, which must be an id (it may go into a URL path)."""
        name, _ = first_present(self.fields, names)
        value = _text(self.fields, names, 128)
        if value is not None and not is_id(value):
            raise EventError(str(name), f"{name} must be an id (letters, digits, - and _)")
        return value


@dataclass(frozen=True)
class EnreachEvent:
    kind: str  # "call_start", "call_end" or "availability" (read the user's current availability)
    user_id: str
    call_id: str | None = None
    event_type: str = ""
    event_id: str | None = None
    timestamp: datetime | None = None  # when it happened, if the notification says


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


def _time(fields: Mapping[str, Any], names: tuple[str, ...]) -> datetime | None:
    """ISO 8601, ``YYYY-MM-DD HH:MM:SS`` or ``/Date(ms)/`` (UTC when no offset is given), or epoch
    seconds/milliseconds."""
    name, value = first_present(fields, names)
    if name is None:
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError
        return parse_time(value.strip())  # ISO 8601 or a JSON date; UTC when no offset is given
    except (ValueError, OverflowError, OSError):
        raise EventError(name, f"{name} must be a time (ISO 8601, UTC when no offset is given)") from None


def read_notification(payload: Any, names: EventMap = EventMap()) -> Notification:
    """Any notification body (envelope, flat or nested payload) -> its type, fields, id and time.
    Raises ``EventError`` (-> 400 naming the field) for one that cannot be read."""
    if not isinstance(payload, Mapping):
        raise EventError("body", "the notification must be a JSON object")
    fields: dict[str, Any] = {}
    for nest in names.payload:
        inner = payload.get(nest)
        if isinstance(inner, Mapping):
            fields.update({k: v for k, v in inner.items() if isinstance(k, str)})
    fields.update({k: v for k, v in payload.items() if isinstance(k, str) and v is not None and v != ""})
    event_type = _text(fields, names.event_type, 100, numbers=False)
    if event_type is None:
        raise EventError(names.event_type[0], f"{names.event_type[0]} is missing")
    # The notification's own id names no Enreach resource (it never goes into a URL): printable text.
    event_id = _text(fields, names.event_id, 128)
    return Notification(event_type, fields, event_id=event_id, timestamp=_time(fields, names.timestamp))


def report_unmapped(event_type: str, payload: Any, reason: str) -> None:
    """Log once per event type (at most 200 types) the whole shape of a notification nobody acts on:
    field names and value types, never values (an operator maps it from that)."""
    with _reported_lock:
        if event_type in _reported or len(_reported) >= 200:
            return
        _reported.add(event_type)
    log.warning(
        "%s",
        json.dumps(
            {
                "event": "enreach_notification_unmapped",
                "event_type": safe_text(event_type, 100),
                "reason": reason,
                "shape": shape(payload),
            }
        ),
    )


def parse_event(payload: Any, names: EventMap = EventMap()) -> EnreachEvent | IgnoredEvent:
    """The presence sync's reading of one notification. Raises ``EventError`` (-> 400) for a malformed one."""
    notification = read_notification(payload, names)
    event_type = notification.event_type
    kind = names.kind_of(event_type)
    if kind is None:
        reason = (
            "its EventType is not mapped: add it to ENREACH_FIELD_MAP.events "
            "(call_start, call_end or availability_changed)"
        )
        report_unmapped(event_type, payload, reason)
        return IgnoredEvent(event_type, reason)
    if kind == "call_start" and not names.call_end:
        reason = "no call-end EventType is mapped (ENREACH_FIELD_MAP.events.call_end): DND would never be lifted"
        report_unmapped(event_type, payload, reason)
        return IgnoredEvent(event_type, reason)
    user_id = notification.id(names.user_id)
    if user_id is None:
        raise EventError(names.user_id[0], "the notification names no user: one of " + ", ".join(names.user_id))
    call_id = None
    if kind in ("call_start", "call_end"):
        call_id = notification.id(names.call_id)
        if call_id is None:
            raise EventError(names.call_id[0], "a call notification needs one of " + ", ".join(names.call_id))
    return EnreachEvent(
        kind,
        user_id,
        call_id=call_id,
        event_type=event_type,
        event_id=notification.event_id,
        timestamp=notification.timestamp,
    )
