"""Callback requests read through the mapping (``CallbackFields``; names and evidence in ``_mapping``).

A request is open until Enreach closes it (handled, or closed otherwise) or its expiry passes.
Times are UTC, as every Enreach time (``parse_time``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._mapping import CallbackFields, first_present

__all__ = ["CallbackList", "CallbackRequest"]


def _text(item: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    value = first_present(item, names)[1]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def _time(item: Mapping[str, Any], names: tuple[str, ...]) -> datetime | None:
    from ._client import parse_time

    text = _text(item, names)
    try:
        return parse_time(text) if text else None
    except ValueError:
        return None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "closed")


@dataclass(frozen=True)
class CallbackList:
    id: str
    name: str
    queue_id: str | None = None

    @classmethod
    def from_api(cls, item: Mapping[str, Any], names: CallbackFields = CallbackFields()) -> CallbackList | None:
        list_id = _text(item, names.list_id)
        if list_id is None:
            return None
        return cls(list_id, _text(item, names.list_name) or list_id, _text(item, names.list_queue_id))


@dataclass(frozen=True)
class CallbackRequest:
    """One callback request (a call list item)."""

    id: str
    list_id: str | None
    list_name: str | None
    number: str | None
    contact_name: str | None
    note: str | None
    due: datetime | None
    expires: datetime | None
    created: datetime | None
    modified: datetime | None
    assigned_user: str | None
    attempts: int
    closed: bool
    resolution: str | None

    @classmethod
    def from_api(cls, item: Mapping[str, Any], names: CallbackFields = CallbackFields()) -> CallbackRequest:
        from ._client import RecordError

        request_id = _text(item, names.id)
        if request_id is None:
            raise RecordError("callbacks.id", "a callback request carries none of " + ", ".join(names.id))
        attempts_value = first_present(item, names.attempts)[1]
        try:
            attempts = max(0, int(attempts_value)) if not isinstance(attempts_value, bool) else 0
        except (TypeError, ValueError):
            attempts = 0
        return cls(
            id=request_id,
            list_id=_text(item, names.item_list_id),
            list_name=_text(item, names.item_list_name),
            number=_text(item, names.number),
            contact_name=_text(item, names.contact_name),
            note=_text(item, names.note),
            due=_time(item, names.due),
            expires=_time(item, names.expires),
            created=_time(item, names.created),
            modified=_time(item, names.modified),
            assigned_user=_text(item, names.assigned_user),
            attempts=attempts,
            closed=_flag(first_present(item, names.closed)[1]),
            resolution=_text(item, names.resolution),
        )

    def state(self, now: datetime, names: CallbackFields = CallbackFields()) -> str:
        """``open``, ``handled`` (closed with a handled resolution), ``closed`` or ``expired``."""
        if self.closed:
            handled = (self.resolution or "").lower() in (v.lower() for v in names.handled_values)
            return "handled" if handled else "closed"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "open"
