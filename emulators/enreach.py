"""An Enreach REST API emulator: discovery, Basic auth, users, calls, availability, callbacks.

Paths and field names mirror ``enreach/_client.py`` (where the UNCONFIRMED ones are
marked). Discovery is served under ``/discovery`` so one port serves both hosts:
set ``ENREACH_DISCOVERY_URL=<emulator>/discovery``.

Data (the sandbox file's ``"enreach"`` object)::

    {"credentials": {"api.user@example.com": "secret-key"},
     "users": [{"Id": "...", "Email": "...", "FirstName": "...", "LastName": "...",
                "MobileNumber": "+358...", "WorkNumber": "+358...", "Availability": 0}],
     "calls": [{"CallId": "...", "UserId": "...", "StartTime": "2026-11-24 08:00:00",
                "EndTime": "...", "Direction": "in"|"out", "OtherNumber": "+358...",
                "DurationInSeconds": 95, "Classification": "Work"|"Private"|"Unclassified",
                "IsMobile": false, "Modified": "2026-11-24 08:02:00"}],
     "callbacks": [{"Id": "...", "Modified": "...", ...}],
     "queues": [{"Id": "...", "Name": "...", "Numbers": ["+358..."], "TypeId": 4}]}
"""

from __future__ import annotations

import base64
import threading
from datetime import datetime, timedelta
from typing import Any

from ._server import EmulatorServer, Request, Response, json_response
from ._webhooks import WebhookSender

__all__ = ["EnreachEmulator"]

_FORMAT = "%Y-%m-%d %H:%M:%S"


def _parse(text: str) -> datetime:
    return datetime.strptime(text, _FORMAT)


class EnreachEmulator(EmulatorServer):
    name = "enreach-emulator"

    def __init__(self, data: dict[str, Any] | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.lock = threading.Lock()
        self.credentials: dict[str, str] = {}
        self.webhook = WebhookSender()  # user-status and call notifications
        self.reset()
        if data:
            self.load(data)

    def reset(self) -> None:
        """Forget users, calls, callbacks and queues (credentials stay)."""
        with self.lock:
            self.users: list[dict[str, Any]] = []
            self.calls: list[dict[str, Any]] = []
            self.callbacks: list[dict[str, Any]] = []
            self.queues: list[dict[str, Any]] = []

    def load(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.credentials.update({k.lower(): v for k, v in (data.get("credentials") or {}).items()})
            self.users += [dict(u) for u in data.get("users", [])]
            self.calls += [dict(c) for c in data.get("calls", [])]
            self.callbacks += [dict(c) for c in data.get("callbacks", [])]
            self.queues += [dict(q) for q in data.get("queues", [])]

    def set_status(self, user_id: str, status: int) -> None:
        """A user's status changes in Enreach (their own click, or the API): notification sent."""
        with self.lock:
            user = next(u for u in self.users if str(u.get("Id")).lower() == user_id.lower())
            user["Availability"] = status
        self.webhook.send({"EventType": "user-status-changed", "UserId": user["Id"], "Status": status})

    def call_event(self, user_id: str, event_type: str, call_id: str) -> None:
        """A call event of a user (call-incoming, call-answered, call-started, call-ended)."""
        self.webhook.send({"EventType": event_type, "UserId": user_id, "CallId": call_id})

    def _authenticated_user(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, secret = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except ValueError:
            return None
        return user.lower() if self.credentials.get(user.lower()) == secret else None

    def handle(self, request: Request) -> Response:
        if request.path == "/discovery/api/user":
            email = request.query.get("user", "").lower()
            if request.method == "POST":
                email = str((request.json() or {}).get("user", "")).lower()
            if email not in self.credentials and not any(u.get("Email", "").lower() == email for u in self.users):
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
        caller = self._authenticated_user(request)
        if caller is None:
            return json_response(
                401,
                {"Message": "Authorization has been denied for this request."},
                {"WWW-Authenticate": 'Basic realm="EnreachAPI"'},
            )
        parts = [p for p in request.path.split("/") if p]
        with self.lock:
            if parts == ["users", "me"]:
                me = next((u for u in self.users if u.get("Email", "").lower() == caller), None)
                return json_response(200, me or {"Id": "00000000-0000-0000-0000-0000000000ee", "Email": caller})
            if parts == ["users"]:
                return json_response(200, [self._public(u) for u in self.users])
            if len(parts) == 3 and parts[0] == "users" and parts[2] == "availability":
                user = next((u for u in self.users if str(u.get("Id")).lower() == parts[1].lower()), None)
                if user is None:
                    return json_response(404, {"Message": f"User {parts[1]} not found."})
                if request.method == "GET":
                    return json_response(200, {"UserId": user["Id"], "Availability": user.get("Availability", 3)})
                body = request.json() or {}
                if body.get("Availability") not in (0, 1, 2, 3, 5):
                    return json_response(400, {"Message": "Availability must be one of 0, 1, 2, 3, 5."})
                user["Availability"] = body["Availability"]
                self.webhook.send(
                    {"EventType": "user-status-changed", "UserId": user["Id"], "Status": body["Availability"]}
                )
                return Response(204)
            if parts == ["calls"]:
                return self._calls(request)
            if parts == ["callbackrequests"]:
                return self._ranged(request, self.callbacks, "Modified", ("ModifiedAfter", "ModifiedBefore"))
            if parts == ["queues"]:
                return json_response(200, self.queues)
        return json_response(404, {"Message": f"No HTTP resource was found that matches {request.path}."})

    @staticmethod
    def _public(user: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in user.items() if k != "Availability"}

    def _calls(self, request: Request) -> Response:
        query = request.query
        if "CallId" in query:
            return json_response(200, [c for c in self.calls if c.get("CallId") == query["CallId"]])
        if "ModifiedAfter" in query or "ModifiedBefore" in query:
            return self._ranged(request, self.calls, "Modified", ("ModifiedAfter", "ModifiedBefore"))
        return self._ranged(request, self.calls, "StartTime", ("StartTime", "EndTime"))

    @staticmethod
    def _ranged(request: Request, items: list[dict[str, Any]], field: str, names: tuple[str, str]) -> Response:
        try:
            start, end = _parse(request.query[names[0]]), _parse(request.query[names[1]])
        except KeyError:
            return json_response(400, {"Message": f"Give {names[0]} and {names[1]} (UTC, YYYY-MM-DD HH:MM:SS)."})
        except ValueError:
            return json_response(400, {"Message": "Times must be formatted YYYY-MM-DD HH:MM:SS."})
        if end - start > timedelta(days=31):
            return json_response(400, {"Message": "The time range can be at most 31 days."})
        found = [i for i in items if i.get(field) and start <= _parse(i[field]) < end]
        return json_response(200, found)
