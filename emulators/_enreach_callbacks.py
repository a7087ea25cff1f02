"""Callback lists and requests of the Enreach emulator, served only in the names of the app's
Enreach mapping (``enreach._mapping.CallbackFields``): the evidence's names where there is
evidence (``CallbackListId``, ``CallbackListItemId``, ``ListId``, ``ListName``, the event names),
the mapping's UNVERIFIED defaults elsewhere. Give other names (``names=``) to play a tenant
whose records differ; the app then needs the same names in ``ENREACH_FIELD_MAP.callbacks``.

Data (the sandbox file's ``"enreach"`` object), in the default names::

    {"callbacklists": [{"ListId": "...", "ListName": "Sales callbacks", "QueueId": "..."}],
     "callbacks": [{"CallbackListItemId": "...", "CallbackListId": "...", "ContactNumber": "+358...",
                    "Note": "...", "DueDate": "2026-11-24 09:00:00", "ExpiryDate": "...",
                    "AssignedUserId": null, "CallbackAttempts": 0, "IsClosed": false}]}

Without ``callbacklists`` the tenant has no callback feature: the paths answer 404. The emulator's
own keys ``$due_in_minutes`` and ``$expires_in_minutes`` set those times relative to loading (the
sandbox's sample requests are always current); a request without a modification time counts as
modified when loaded.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from enreach._mapping import CallbackFields, first_present

from ._server import Request, Response, json_response

__all__ = ["CallbackStore"]

_FORMAT = "%Y-%m-%d %H:%M:%S"
# the item's fields by mapping key (times are kept as naive UTC datetimes)
_ITEM_KEYS = (
    "id",
    "item_list_id",
    "item_list_name",
    "number",
    "contact_name",
    "note",
    "due",
    "expires",
    "created",
    "modified",
    "assigned_user",
    "attempts",
    "closed",
    "resolution",
)
_TIMES = ("due", "expires", "created", "modified")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _parse(text: str) -> datetime:
    return datetime.strptime(str(text).replace("T", " ").replace("Z", "")[:19], _FORMAT)


class CallbackStore:
    def __init__(self, names: CallbackFields = CallbackFields()) -> None:
        self.names = names
        self.lists: list[dict[str, Any]] | None = None  # None: the tenant has no callback lists
        self.items: dict[str, dict[str, Any]] = {}
        self.closes: list[tuple[str, dict[str, Any]]] = []  # (id, body) of each close the API received

    # -- data ---------------------------------------------------------------------------------

    def load(self, data: dict[str, Any], *, defaults: CallbackFields = CallbackFields()) -> None:
        """Lists and items given in the default names (the data file's), stored by mapping key."""
        if "callbacklists" in data:
            self.lists = (self.lists or []) + [
                {
                    "id": str(first_present(i, defaults.list_id)[1]),
                    "name": first_present(i, defaults.list_name)[1],
                    "queue": first_present(i, defaults.list_queue_id)[1],
                }
                for i in data["callbacklists"]
            ]
        for source in data.get("callbacks", []):
            item = {key: first_present(source, getattr(defaults, key))[1] for key in _ITEM_KEYS}
            for key in _TIMES:
                if item[key]:
                    item[key] = _parse(item[key])
            # the emulator's own keys ($...; never served): times relative to loading, so samples stay current
            for key, own in (("due", "$due_in_minutes"), ("expires", "$expires_in_minutes")):
                if isinstance(source.get(own), int):
                    item[key] = _now() + timedelta(minutes=source[own])
            item["id"] = str(item["id"] or uuid.uuid4())
            item["modified"] = item["modified"] or item["created"] or _now()
            item["attempts"] = int(item["attempts"] or 0)
            item["closed"] = bool(item["closed"])
            self.items[item["id"]] = item

    def add(self, **fields: Any) -> dict[str, Any]:
        """A customer leaves a callback request (fields by mapping key; times as datetimes)."""
        if self.lists is None:
            self.lists = []
        now = _now()
        item: dict[str, Any] = dict.fromkeys(_ITEM_KEYS)
        item.update(
            id=str(uuid.uuid4()),
            created=now,
            modified=now,
            due=now + timedelta(hours=1),
            expires=now + timedelta(hours=24),
            attempts=0,
            closed=False,
        )
        for key, value in fields.items():
            if key not in _ITEM_KEYS:
                raise KeyError(f"unknown callback field {key!r}; known: {', '.join(_ITEM_KEYS)}")
            item[key] = value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value
        self.items[item["id"]] = item
        return item

    def change(self, request_id: str, **fields: Any) -> dict[str, Any]:
        item = self.items[request_id]
        for key, value in fields.items():
            item[key] = value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value
        item["modified"] = max(_now(), item["modified"])
        return item

    # -- rendering ----------------------------------------------------------------------------

    def render(self, item: dict[str, Any]) -> dict[str, Any]:
        names = self.names
        record: dict[str, Any] = {}
        for key in _ITEM_KEYS:
            candidates = getattr(names, key)
            if not candidates:
                continue
            value = item[key]
            if key == "item_list_name" and value is None and item["item_list_id"]:
                value = next((i["name"] for i in self.lists or [] if i["id"] == item["item_list_id"]), None)
            if isinstance(value, datetime):
                value = value.strftime(_FORMAT)
            record[candidates[0]] = value
        return record

    def _list(self, entry: dict[str, Any]) -> dict[str, Any]:
        names = self.names
        record = {names.list_id[0]: entry["id"], names.list_name[0]: entry["name"]}
        if names.list_queue_id and entry.get("queue"):
            record[names.list_queue_id[0]] = entry["queue"]
        return record

    # -- the API ------------------------------------------------------------------------------

    @staticmethod
    def _template(path: str) -> re.Pattern[str]:
        return re.compile("^" + re.escape(path.strip("/")).replace(re.escape("{id}"), "([^/]+)") + "$")

    def handle(self, request: Request, path: str, notify: Callable[[str, str], None]) -> Response | None:
        """The answer for a callback path, None for any other path."""
        names = self.names
        path = path.strip("/")
        close = self._template(names.close_path).match(path)
        one = self._template(names.item_path).match(path)
        if path not in (names.lists_path.strip("/"), names.items_path.strip("/")) and not close and not one:
            return None
        if self.lists is None:
            return json_response(404, {"Message": f"No HTTP resource was found that matches {request.path}."})
        if path == names.lists_path.strip("/") and request.method == "GET":
            return json_response(200, [self._list(e) for e in self.lists])
        if path == names.items_path.strip("/") and request.method == "GET":
            return self._changed(request)
        if close and request.method == "POST":
            item = self.items.get(close.group(1))
            if item is None:
                return json_response(404, {"Message": f"Callback request {close.group(1)} not found."})
            body = request.json() or {}
            self.closes.append((item["id"], body))
            resolution = first_present(body, names.resolution)[1] if names.resolution else None
            self.change(item["id"], closed=True, resolution=resolution or "Closed")
            notify(names.closed_events[0] if names.closed_events else "CallbackClosed", item["id"])
            return Response(204)
        if one and request.method == "GET":
            item = self.items.get(one.group(1))
            if item is None:
                return json_response(404, {"Message": f"Callback request {one.group(1)} not found."})
            return json_response(200, self.render(item))
        return json_response(405, {"Message": f"The requested resource does not support {request.method}."})

    def _changed(self, request: Request) -> Response:
        names = self.names
        after, before = names.modified_after_param, names.modified_before_param
        try:
            start, end = _parse(request.query[after]), _parse(request.query[before])
        except KeyError:
            return json_response(400, {"Message": f"Give {after} and {before} (UTC, YYYY-MM-DD HH:MM:SS)."})
        except ValueError:
            return json_response(400, {"Message": "Times must be formatted YYYY-MM-DD HH:MM:SS."})
        if end - start > timedelta(days=31):
            return json_response(400, {"Message": "The time range can be at most 31 days."})
        found = [self.render(i) for i in self.items.values() if start <= i["modified"] < end]
        return json_response(200, found)
