"""An Enreach REST API emulator that speaks only what public evidence shows of the real API.

Sources: ``../shared/reference/enreach-api.md`` ("Evidence from public client code"). Discovery
is served under ``/discovery`` so one port serves both hosts: set
``ENREACH_DISCOVERY_URL=<emulator>/discovery``.

* ``GET users/me`` -> the caller's user; ``GET users`` -> ``[{Id, UserName, FirstName, LastName}]``
  (mokso/PSBeneAPI filters users on ``UserName``). Numbers and a separate ``Email`` are only on
  directory entries.
* ``GET directory`` -> ``[{ID, Name: "Default"}]``; ``GET directory/<ID>?MaxCount=`` ->
  ``{Entries: [{Id, FirstName, LastName, Email, WorkNumber, MobileNumber, ...}]}`` (enreachvoice_mcp).
* ``GET calls`` with ``StartTime``/``EndTime`` or ``ModifiedAfter``/``ModifiedBefore`` (31 days at
  most) or ``CallId``, and ``UserIDs=<id>`` for whose calls (without it: the caller's own). Call
  records are served as loaded: the evidence fields are ``CallId``, ``ANum``, ``BNum``,
  ``StartTime``/``TimeStamp``, ``Direction`` (boolean), ``Duration``, ``EndResult``,
  ``RecordingIds``, ``UserName``, ``AnswerQueueId``. A record's owner is the user whose
  ``UserName`` it carries. Keys starting with ``$`` are the emulator's own and never served:
  ``$modified`` (default: start + Duration) drives the Modified* filter.
* Availabilities are events: ``GET users/<id>/availability/current`` (204 when none is active:
  the user is Available), ``POST users/<id>/availability`` ``{EventTypeID, EventSource, Note,
  UserID}`` -> the new availability with its ``Id``, ``DELETE users/<id>/availability/<Id>``.
* ``GET servicecall`` (inbound queue calls, mokso/enreachvoice ``get_inbound_queuecalls``) with
  the same time filters; records are served as loaded (``"service_calls"``). No public source
  shows their fields: tests load the app's default names (``ENREACH_FIELD_MAP.service_calls``).
* ``GET calls/transcripts/<id>`` -> ``{TranscriptStatus: Pending|Completed, Text}`` (mokso/enreachvoice
  ``get_transcript``); 404 for an unknown id. Tests change a transcript with ``set_transcript``.
* Webhook notifications: an envelope ``{Id, Timestamp, RootEntityType, RootEntityId, EntityType,
  EntityId, EventType}`` with the endpoint's ``Secret`` in a header (``configure_webhook``).

Data (the sandbox file's ``"enreach"`` object)::

    {"credentials": {"api.user@example.com": "secret-key"},
     "users": [{"Id": "...", "UserName": "aino@example.fi", "FirstName": "...", "LastName": "..."}],
     "directory": [{"Id": "...", "Email": "...", "MobileNumber": "+358...", "WorkNumber": "+358..."}],
     "calls": [{"CallId": "...", "UserName": "aino@example.fi", "StartTime": "2026-11-24 08:00:00",
                "Direction": false, "ANum": "+358...", "BNum": "+358...", "Duration": 95, ...}],
     "availabilities": [{"UserID": "...", "EventTypeID": 3}],
     "queues": [{"Id": "...", "Name": "...", "Numbers": ["+358..."], "TypeId": 4}]}
"""

from __future__ import annotations

import base64
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ._server import EmulatorServer, Request, Response, json_response
from ._webhooks import WebhookSender

__all__ = ["EnreachEmulator"]

_FORMAT = "%Y-%m-%d %H:%M:%S"


def _parse(text: str) -> datetime:
    text = str(text).replace("T", " ").replace("Z", "")[:19]
    return datetime.strptime(text, _FORMAT)


def _start_of(call: dict[str, Any]) -> datetime | None:
    text = call.get("StartTime") or call.get("TimeStamp")
    try:
        return _parse(text) if text else None
    except ValueError:
        return None


def _modified_of(call: dict[str, Any]) -> datetime | None:
    if call.get("$modified"):
        return _parse(call["$modified"])
    start = _start_of(call)
    duration = call.get("Duration")
    seconds = int(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else 0
    return start + timedelta(seconds=seconds) if start else None


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("$")}


class EnreachEmulator(EmulatorServer):
    name = "enreach-emulator"

    def __init__(self, data: dict[str, Any] | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.lock = threading.Lock()
        self.credentials: dict[str, str] = {}
        self.webhook = WebhookSender()  # availability and call notifications
        self.reset()
        if data:
            self.load(data)

    def reset(self) -> None:
        """Forget users, directory, calls, availabilities and queues (credentials stay)."""
        with self.lock:
            self.users: list[dict[str, Any]] = []
            self.directory: list[dict[str, Any]] = []
            self.calls: list[dict[str, Any]] = []
            self.availabilities: list[dict[str, Any]] = []  # active ones, oldest first
            self.queues: list[dict[str, Any]] = []
            self.service_calls: list[dict[str, Any]] = []
            self.transcripts: dict[str, dict[str, Any]] = {}

    def load(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.credentials.update({k.lower(): v for k, v in (data.get("credentials") or {}).items()})
            self.users += [dict(u) for u in data.get("users", [])]
            self.directory += [dict(e) for e in data.get("directory", [])]
            self.calls += [dict(c) for c in data.get("calls", [])]
            for item in data.get("availabilities", []):
                self.availabilities.append({"Id": str(uuid.uuid4()), "EventSource": "data file", **item})
            self.queues += [dict(q) for q in data.get("queues", [])]
            self.service_calls += [dict(c) for c in data.get("service_calls", [])]
            for transcript_id, body in (data.get("transcripts") or {}).items():
                self.transcripts[str(transcript_id).lower()] = dict(body)

    def set_transcript(self, transcript_id: str, status: str, text: str = "") -> None:
        """Enreach's transcription moves on (Pending -> Completed)."""
        with self.lock:
            self.transcripts[transcript_id.lower()] = {"TranscriptStatus": status, "Text": text}

    # -- what tests and the sandbox do in "Enreach" -----------------------------------------

    def configure_webhook(self, url: str | None, *, secret: str | None = None, header: str = "Secret") -> None:
        """Where notifications go, with the endpoint's shared secret in ``header``."""
        self.webhook.configure(url, {header: secret} if secret else {})

    def notify(self, event_type: str, *, user_id: str, call_id: str | None = None) -> None:
        """Send one notification in the envelope third-party parsers read."""
        self.webhook.send(
            {
                "Id": str(uuid.uuid4()),
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "RootEntityType": "Call" if call_id else "User",
                "RootEntityId": call_id or user_id,
                "EntityType": "User",
                "EntityId": user_id,
                "EventType": event_type,
            }
        )

    availability_event_type = "EmulatorAvailabilityChanged"  # not a vendor name: none is public; tests map it

    def set_availability(self, user_id: str, event_type_id: int | None, *, source: str = "user") -> None:
        """The user changes their own availability in Enreach (None: back to Available)."""
        with self.lock:
            self._end_all(user_id)
            if event_type_id is not None:
                self._start(user_id, {"EventTypeID": event_type_id, "EventSource": source})
        self.notify(self.availability_event_type, user_id=user_id)

    def current_type(self, user_id: str) -> int | None:
        """The EventTypeID of the user's active availability (None: Available)."""
        with self.lock:
            current = self._current(user_id)
            return int(current["EventTypeID"]) if current else None

    # -- internals --------------------------------------------------------------------------

    def _user(self, user_id: str) -> dict[str, Any] | None:
        return next((u for u in self.users if str(u.get("Id")).lower() == user_id.lower()), None)

    def _current(self, user_id: str) -> dict[str, Any] | None:
        mine = [a for a in self.availabilities if str(a.get("UserID", "")).lower() == user_id.lower()]
        return mine[-1] if mine else None

    def _start(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        availability = {
            "Id": str(uuid.uuid4()),
            "UserID": user_id,
            "EventTypeID": body["EventTypeID"],
            "EventSource": body.get("EventSource"),
            "Note": body.get("Note"),
            "StartTime": datetime.now(UTC).strftime(_FORMAT),
        }
        self.availabilities.append(availability)
        return availability

    def _end_all(self, user_id: str) -> None:
        self.availabilities = [a for a in self.availabilities if str(a.get("UserID", "")).lower() != user_id.lower()]

    def _authenticated_user(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, secret = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except ValueError:
            return None
        return user.lower() if self.credentials.get(user.lower()) == secret else None

    def _discovery(self, request: Request) -> Response:
        email = request.query.get("user", "").lower()
        if request.method == "POST":
            email = str((request.json() or {}).get("user", "")).lower()
        if email not in self.credentials and not any(str(u.get("UserName", "")).lower() == email for u in self.users):
            return json_response(200, [])
        return json_response(
            200,
            [
                {
                    "siloName": "emulator",
                    "username": email,
                    "apiEndpoint": self.url + "/",
                    "uiEndpoint": self.url + "/ui/",
                    "authority": None,
                    "authorityIdPHint": None,
                    "basicAuthEndpoint": self.url + "/",
                }
            ],
        )

    def handle(self, request: Request) -> Response:
        if request.path == "/discovery/api/user":
            return self._discovery(request)
        caller = self._authenticated_user(request)
        if caller is None:
            return json_response(
                401,
                {"Message": "Authorization has been denied for this request."},
                {"WWW-Authenticate": 'Basic realm="EnreachAPI"'},
            )
        parts = [p for p in request.path.split("/") if p]
        notify: str | None = None
        with self.lock:
            me = next((u for u in self.users if str(u.get("UserName", "")).lower() == caller), None)
            me = me or {"Id": "00000000-0000-0000-0000-0000000000ee", "UserName": caller}
            if len(parts) >= 2 and parts[0] == "users" and parts[1] == "me":
                parts[1] = str(me["Id"])
                if len(parts) == 2:
                    return json_response(200, _public(me))
            if parts == ["users"]:
                return json_response(200, [_public(u) for u in self.users])
            if len(parts) == 2 and parts[0] == "users":
                user = self._user(parts[1])
                return json_response(200, _public(user)) if user else self._not_found(request)
            if len(parts) >= 3 and parts[0] == "users" and parts[2] == "availability":
                response, notify = self._availability(request, parts)
            elif parts == ["directory"]:
                return json_response(200, [{"ID": "d1a2b3c4-0000-4000-8000-000000000001", "Name": "Default"}])
            elif parts == ["directory", "d1a2b3c4-0000-4000-8000-000000000001"]:
                count = int(request.query.get("MaxCount", "100") or 100)
                return json_response(200, {"Entries": [_public(e) for e in self.directory[:count]]})
            elif parts == ["calls"]:
                return self._calls(request, str(me["Id"]))
            elif parts == ["servicecall"]:
                return self._windowed(request, self.service_calls)
            elif len(parts) == 3 and parts[:2] == ["calls", "transcripts"]:
                found = self.transcripts.get(parts[2].lower())
                return json_response(200, dict(found)) if found else self._not_found(request)
            elif parts == ["queues"]:
                return json_response(200, self.queues)
            else:
                return self._not_found(request)
        if notify:
            self.notify(self.availability_event_type, user_id=notify)
        return response

    @staticmethod
    def _not_found(request: Request) -> Response:
        return json_response(404, {"Message": f"No HTTP resource was found that matches {request.path}."})

    def _availability(self, request: Request, parts: list[str]) -> tuple[Response, str | None]:
        user = self._user(parts[1])
        if user is None:
            return json_response(404, {"Message": f"User {parts[1]} not found."}), None
        user_id = str(user["Id"])
        if parts[3:] == ["current"] and request.method == "GET":
            current = self._current(user_id)
            return (json_response(200, _public(current)) if current else Response(204)), None
        if len(parts) == 3 and request.method == "POST":
            body = request.json() or {}
            type_id = body.get("EventTypeID")
            if isinstance(type_id, bool) or not isinstance(type_id, int):
                return json_response(400, {"Message": "EventTypeID is required (an integer)."}), None
            if str(body.get("UserID", user_id)).lower() != user_id.lower():
                return json_response(400, {"Message": "UserID does not match the user in the path."}), None
            return json_response(200, self._start(user_id, body)), user_id
        if len(parts) == 4 and request.method == "DELETE":
            before = len(self.availabilities)
            self.availabilities = [
                a
                for a in self.availabilities
                if not (str(a["Id"]).lower() == parts[3].lower() and str(a["UserID"]).lower() == user_id.lower())
            ]
            if len(self.availabilities) == before:
                return json_response(404, {"Message": f"Availability {parts[3]} not found."}), None
            return Response(204), user_id
        return self._not_found(request), None

    def _calls(self, request: Request, caller_id: str) -> Response:
        query = request.query
        owner_id = query.get("UserIDs") or caller_id
        owner = self._user(owner_id)
        owner_name = str(owner.get("UserName", "")).lower() if owner else ""
        mine = [c for c in self.calls if str(c.get("UserName", "")).lower() == owner_name and owner_name]
        if "CallId" in query:
            return json_response(
                200, [_public(c) for c in mine if str(c.get("CallId") or c.get("CallID")) == query["CallId"]]
            )
        return self._windowed(request, mine)

    def _windowed(self, request: Request, records: list[dict[str, Any]]) -> Response:
        query = request.query
        mine = records
        if "ModifiedAfter" in query or "ModifiedBefore" in query:
            names, moment = ("ModifiedAfter", "ModifiedBefore"), _modified_of
        else:
            names, moment = ("StartTime", "EndTime"), _start_of
        try:
            start, end = _parse(query[names[0]]), _parse(query[names[1]])
        except KeyError:
            return json_response(400, {"Message": f"Give {names[0]} and {names[1]} (UTC, YYYY-MM-DD HH:MM:SS)."})
        except ValueError:
            return json_response(400, {"Message": "Times must be formatted YYYY-MM-DD HH:MM:SS."})
        if end - start > timedelta(days=31):
            return json_response(400, {"Message": "The time range can be at most 31 days."})
        found = []
        for call in mine:
            when = moment(call)
            if when is not None and start <= when < end:
                found.append(_public(call))
        return json_response(200, found)
