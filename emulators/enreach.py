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
* Availabilities are events: ``GET users/<id>/availability/current`` (when none is active, the
  user is Available; what it answers then is a mode, below), ``POST users/<id>/availability``
  ``{EventTypeID, EventSource, Note, UserID}`` -> the new availability with its ``Id``,
  ``DELETE users/<id>/availability/<Id>``.
* Dates: records are loaded with ``YYYY-MM-DD HH:MM:SS`` (or ISO) times and served so when the
  client sends ``X-Json-Serializer: 2`` (what mokso/enreachvoice and enreachvoice_mcp send);
  without it they are served as Microsoft JSON dates, ``/Date(1712518735000)/`` (what an
  ASP.NET API answers by default, and what mokso/BeneCallArchiver, which sends no such header,
  reads as dates), so a client that forgets the header fails here as it would in life.
* Unknowns are modes (``configure``): what ``availability/current`` answers when none is
  active and what the availability ``DELETE`` answers (``empty_current``: "204", "404",
  "null", "{}", "available_record"; ``delete_answer``: "204", "200_null", "200_record"); what
  ``GET calls`` without ``UserIDs`` returns (``calls_without_user``: "own" or "all"); what a
  list in ``UserIDs`` returns (``user_ids_list``: "none" = ``[]``, "union", "400"); a request
  rate limit (``rate_limit``: requests per ``rate_window`` seconds, then 429 with
  ``Retry-After``, as public clients expect; Enreach publishes no numbers).
* The API user (the caller) is a user like the others: listed by ``GET users``, served at
  ``users/<id>`` and ``users/me``, with availabilities.
* ``GET queues`` -> ``[{Id, Name, Numbers, TypeId, Status: {OpenStatus, MaxWaitTime,
  QueueLength, OngoingCalls, AgentsOnWrapUp, FreeAgents, ServingAgents}}]`` and directory entries
  with ``OtherNumber, QueueId, Description, Company, Subcompany, Location, Department, Status``
  (null when unknown); ``EntryTypes=2`` lists the service queues' entries, ``Number=`` filters
  on the entries' numbers (both as mokso/enreachvoice_mcp main.py reads them).
* ``GET servicecall`` (inbound queue calls, mokso/enreachvoice ``get_inbound_queuecalls``) with
  the same time filters; records are served as loaded (``"service_calls"``). No public source
  shows their fields: tests load the app's default names (``ENREACH_FIELD_MAP.service_calls``).
* ``GET calls/transcripts/<id>`` -> ``{TranscriptStatus: Pending|Completed, Text}`` (mokso/enreachvoice
  ``get_transcript``); 404 for an unknown id. Tests change a transcript with ``set_transcript``.
* Callback lists and requests (``_enreach_callbacks.py``): only in the names of the app's
  Enreach mapping (``CallbackFields``; UNVERIFIED beyond ``CallbackListId``/``CallbackListItemId``/
  ``ListId``/``ListName`` and the event names), changed-since queries, one request by id, and the
  close write; ``add_callback``/``change_callback``/``close_callback`` play what happens in Enreach
  and notify ``CallbackCreated``/``CallbackUpdated``/``CallbackClosed``.
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
import json
import re
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from enreach._mapping import CallbackFields

from ._enreach_callbacks import CallbackStore
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


_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?Z?$")
_EPOCH = datetime(1970, 1, 1)


def _json_dates(value: Any) -> Any:
    """Every date-time text in ``value`` as a Microsoft JSON date (``/Date(<ms since 1970 UTC>)/``)."""
    if isinstance(value, dict):
        return {k: _json_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_dates(v) for v in value]
    if isinstance(value, str) and _DATE_TEXT.match(value):
        moment = datetime.fromisoformat(value.replace("Z", "").replace(" ", "T"))
        return f"/Date({int((moment - _EPOCH).total_seconds() * 1000)})/"
    return value


API_USER_NAMESPACE = uuid.UUID("6f1c7a52-3c1e-4d57-9a3a-7d0a2b3c4d5e")  # the emulator's own ids

MODES: dict[str, tuple[str, ...]] = {
    "empty_current": ("204", "404", "null", "{}", "available_record"),
    "delete_answer": ("204", "200_null", "200_record"),
    "calls_without_user": ("own", "all"),
    "user_ids_list": ("none", "union", "400"),
}
# EventTypeID of the "Available" record (empty_current="available_record"); not a vendor number.
AVAILABLE_RECORD_TYPE = 0
_DEFAULT_QUEUE_STATUS = {
    "OpenStatus": 5,
    "MaxWaitTime": 0,
    "QueueLength": 0,
    "OngoingCalls": 0,
    "AgentsOnWrapUp": 0,
    "FreeAgents": 0,
    "ServingAgents": 0,
}
_ENTRY_FIELDS = (
    "Id",
    "FirstName",
    "LastName",
    "Email",
    "WorkNumber",
    "MobileNumber",
    "OtherNumber",
    "QueueId",
    "Description",
    "Company",
    "Subcompany",
    "Location",
    "Department",
    "Status",
)


class EnreachEmulator(EmulatorServer):
    name = "enreach-emulator"

    def __init__(self, data: dict[str, Any] | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.lock = threading.Lock()
        self.credentials: dict[str, str] = {}
        self.webhook = WebhookSender()  # availability and call notifications
        self.callback_names = CallbackFields()  # the names callback records are served in
        self._arrivals: deque[float] = deque()
        self.reset()
        if data:
            self.load(data)

    def reset(self) -> None:
        """Forget users, directory, calls, availabilities and queues, back to the default modes
        and no rate limit (credentials stay)."""
        with self.lock:
            self.modes: dict[str, str] = {name: values[0] for name, values in MODES.items()}
            self.rate_limit = 0  # requests per rate_window seconds; 0 = none
            self.rate_window = 1.0
            self.rate_retry_after = 1
            self.throttled = 0  # requests answered 429 by the rate limit
            self._arrivals.clear()
            self.users: list[dict[str, Any]] = []
            self.directory: list[dict[str, Any]] = []
            self.calls: list[dict[str, Any]] = []
            self.availabilities: list[dict[str, Any]] = []  # active ones, oldest first
            self.queues: list[dict[str, Any]] = []
            self.service_calls: list[dict[str, Any]] = []
            self.transcripts: dict[str, dict[str, Any]] = {}
            self.callbacks = CallbackStore(self.callback_names)

    def configure(
        self,
        *,
        rate_limit: int | None = None,
        rate_window: float | None = None,
        rate_retry_after: int | None = None,
        **modes: str,
    ) -> None:
        """Choose how the unknowns answer (``MODES``) and the request rate limit."""
        with self.lock:
            for name, value in modes.items():
                if name not in MODES or value not in MODES[name]:
                    raise ValueError(f"unknown emulator mode {name}={value!r}; known: {MODES}")
                self.modes[name] = value
            if rate_limit is not None:
                self.rate_limit = rate_limit
                self._arrivals.clear()
            if rate_window is not None:
                self.rate_window = rate_window
            if rate_retry_after is not None:
                self.rate_retry_after = rate_retry_after

    def control(self, request: Request) -> Response | None:
        """``POST /_emulator/enreach {"empty_current": "null", "rate_limit": 50, ...}``."""
        if request.path == "/_emulator/enreach" and request.method == "POST":
            try:
                self.configure(**(request.json() or {}))
            except (TypeError, ValueError) as exc:
                return json_response(400, {"error": str(exc)})
            return Response(204)
        return None

    def api_user_id(self, email: str) -> str:
        """The id the emulator gives an API user that the data file does not list."""
        return str(uuid.uuid5(API_USER_NAMESPACE, email.lower()))

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
            self.callbacks.load(data)

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

    def serve_callback_names(self, names: CallbackFields) -> None:
        """Serve callback records, paths and events in these names (a tenant unlike the defaults)."""
        with self.lock:
            self.callback_names = names
            self.callbacks.names = names

    def notify_callback(self, event_type: str, request_id: str) -> None:
        """A callback notification: the envelope, with the request's id where the mapping reads it."""
        names = self.callback_names
        self.webhook.send(
            {
                "Id": str(uuid.uuid4()),
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "RootEntityType": "CallbackListItem",
                "RootEntityId": request_id,
                "EntityType": "CallbackListItem",
                "EntityId": request_id,
                "EventType": event_type,
                **({names.event_item_id[0]: request_id} if names.event_item_id else {}),
            }
        )

    def add_callback(self, *, notify: bool = True, **fields: Any) -> str:
        """A customer leaves a callback request (fields by mapping key, e.g. ``number``, ``item_list_id``)."""
        with self.lock:
            item = self.callbacks.add(**fields)
        if notify:
            self.notify_callback(self.callback_names.created_events[0], item["id"])
        return str(item["id"])

    def change_callback(self, request_id: str, *, notify: bool = True, **fields: Any) -> None:
        with self.lock:
            self.callbacks.change(request_id, **fields)
        if notify:
            self.notify_callback(self.callback_names.changed_events[0], request_id)

    def close_callback(self, request_id: str, *, handled: bool = True, notify: bool = True) -> None:
        """An agent handles (or closes) the request in Enreach."""
        names = self.callback_names
        resolution = names.handled_values[0] if handled else "Cancelled"
        with self.lock:
            self.callbacks.change(request_id, closed=True, resolution=resolution)
        if notify:
            self.notify_callback(names.closed_events[0], request_id)

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

    def _all_users(self) -> list[dict[str, Any]]:
        """The loaded users and every API user (credential) they do not list."""
        listed = {str(u.get("UserName", "")).lower() for u in self.users}
        extra = [
            {"Id": self.api_user_id(email), "UserName": email, "FirstName": "API", "LastName": "User"}
            for email in sorted(self.credentials)
            if email not in listed
        ]
        return self.users + extra

    def _user(self, user_id: str) -> dict[str, Any] | None:
        return next((u for u in self._all_users() if str(u.get("Id")).lower() == user_id.lower()), None)

    def _rate_limited(self) -> bool:
        if not self.rate_limit:
            return False
        now = time.monotonic()
        with self.lock:
            while self._arrivals and self._arrivals[0] <= now - self.rate_window:
                self._arrivals.popleft()
            if len(self._arrivals) >= self.rate_limit:
                self.throttled += 1
                return True
            self._arrivals.append(now)
            return False

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
        if self._rate_limited():
            return json_response(429, {"Message": "Too many requests."}, {"Retry-After": str(self.rate_retry_after)})
        response = self._handle(request)
        if request.headers.get("x-json-serializer", "").strip() != "2" and response.body:
            if response.headers.get("Content-Type", "").startswith("application/json"):
                response.body = json.dumps(_json_dates(json.loads(response.body))).encode("utf-8")
        return response

    def _handle(self, request: Request) -> Response:
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
            everyone = self._all_users()
            me = next(u for u in everyone if str(u.get("UserName", "")).lower() == caller)
            if len(parts) >= 2 and parts[0] == "users" and parts[1] == "me":
                parts[1] = str(me["Id"])
                if len(parts) == 2:
                    return json_response(200, _public(me))
            if parts == ["users"]:
                return json_response(200, [_public(u) for u in everyone])
            if len(parts) == 2 and parts[0] == "users":
                user = self._user(parts[1])
                return json_response(200, _public(user)) if user else self._not_found(request)
            if len(parts) >= 3 and parts[0] == "users" and parts[2] == "availability":
                response, notify = self._availability(request, parts)
            elif parts == ["directory"]:
                return json_response(200, [{"ID": "d1a2b3c4-0000-4000-8000-000000000001", "Name": "Default"}])
            elif parts == ["directory", "d1a2b3c4-0000-4000-8000-000000000001"]:
                return self._directory(request)
            elif parts == ["calls"]:
                return self._calls(request, str(me["Id"]))
            elif parts == ["servicecall"]:
                return self._windowed(request, self.service_calls)
            elif len(parts) == 3 and parts[:2] == ["calls", "transcripts"]:
                found = self.transcripts.get(parts[2].lower())
                return json_response(200, dict(found)) if found else self._not_found(request)
            elif parts == ["queues"]:
                return json_response(200, [self._queue(q) for q in self.queues])
            else:
                answer = self.callbacks.handle(
                    request, "/".join(parts), lambda event, item: self.notify_callback(event, item)
                )
                return answer if answer is not None else self._not_found(request)
        if notify:
            self.notify(self.availability_event_type, user_id=notify)
        return response

    @staticmethod
    def _queue(queue: dict[str, Any]) -> dict[str, Any]:
        served = {"Id": None, "Name": None, "Numbers": [], "TypeId": 4, **_public(queue)}
        served.setdefault("Status", dict(_DEFAULT_QUEUE_STATUS))
        return served

    def _directory(self, request: Request) -> Response:
        try:
            count = int(request.query.get("MaxCount", "100") or 100)
        except ValueError:
            return json_response(400, {"Message": "MaxCount must be an integer."})
        entries = [{**dict.fromkeys(_ENTRY_FIELDS), **_public(e)} for e in self.directory]
        queue_entries = [
            {
                **dict.fromkeys(_ENTRY_FIELDS),
                "Id": q.get("$EntryId") or str(uuid.uuid5(API_USER_NAMESPACE, f"queue:{q.get('Id')}")),
                "LastName": q.get("Name"),
                "WorkNumber": (q.get("Numbers") or [None])[0],
                "QueueId": q.get("Id"),
                "Description": q.get("$Description"),
            }
            for q in self.queues
        ]
        types = {t.strip() for t in request.query.get("EntryTypes", "").split(",") if t.strip()}
        if types:
            # 2 = service queues (enreach-api.md); no other EntryTypes number is public
            entries = queue_entries if "2" in types else []
        number = request.query.get("Number", "").strip()
        if number:
            numbers = ("WorkNumber", "MobileNumber", "OtherNumber")
            entries = [e for e in entries + queue_entries if any(e.get(n) == number for n in numbers)]
            entries = list({str(e["Id"]): e for e in entries}.values())
        return json_response(200, {"Entries": entries[:count]})

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
            if current:
                return json_response(200, _public(current)), None
            return self._none_active(user_id), None
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
            answer = self.modes["delete_answer"]
            if answer == "200_null":
                return json_response(200, None), user_id
            if answer == "200_record":
                return json_response(200, {"Id": parts[3], "UserID": user_id}), user_id
            return Response(204), user_id
        return self._not_found(request), None

    def _none_active(self, user_id: str) -> Response:
        shape = self.modes["empty_current"]
        if shape == "404":
            return json_response(404, {"Message": "No active availability."})
        if shape == "null":
            return json_response(200, None)
        if shape == "{}":
            return json_response(200, {})
        if shape == "available_record":
            return json_response(
                200,
                {
                    "Id": str(uuid.uuid5(API_USER_NAMESPACE, f"available:{user_id}")),
                    "UserID": user_id,
                    "EventTypeID": AVAILABLE_RECORD_TYPE,
                    "Availability": "Available",
                    "StartTime": "2000-01-01 00:00:00",
                    "EndTime": "9999-12-31 23:59:59",
                },
            )
        return Response(204)

    def _owners(self, request: Request, caller_id: str) -> tuple[set[str] | None, Response | None]:
        """The UserNames whose calls are asked for (None: everyone's), or an error answer."""
        given = request.query.get("UserIDs", "").strip()
        if not given:
            if self.modes["calls_without_user"] == "all" or "CallId" in request.query:
                return None, None
            given = caller_id
        ids = [i.strip() for i in given.split(",") if i.strip()]
        if len(ids) > 1:
            mode = self.modes["user_ids_list"]
            if mode == "400":
                return None, json_response(400, {"Message": "UserIDs takes one id."})
            if mode == "none":
                return set(), None
        names = set()
        for user_id in ids:
            user = self._user(user_id)
            if user and user.get("UserName"):
                names.add(str(user["UserName"]).lower())
        return names, None

    def _calls(self, request: Request, caller_id: str) -> Response:
        query = request.query
        owners, error = self._owners(request, caller_id)
        if error is not None:
            return error
        mine = [c for c in self.calls if owners is None or str(c.get("UserName", "")).lower() in owners]
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
