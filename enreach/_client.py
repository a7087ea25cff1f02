"""The Enreach REST API ("EnreachAPI", formerly BeneAPI) client.

Every vendor path and field name the app uses is in this module, so a
correction is a one-file change. Facts: ../shared/reference/enreach-api.md.
Items marked UNCONFIRMED there are marked here too.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from core.retry import RetryExhausted, RetryPolicy, send_with_retry

__all__ = [
    "Availability",
    "EnreachAuthError",
    "EnreachCall",
    "EnreachClient",
    "EnreachError",
    "EnreachUnavailable",
    "EnreachUser",
    "discover_api_url",
]

DISCOVERY_PATH = "/api/user"  # GET ?user=<email> -> [{"apiEndpoint": ...}]
HEADERS = {"Accept": "application/json", "Content-Type": "application/json", "X-Json-Serializer": "2"}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # UTC, as the calls resource expects
MAX_CALL_RANGE = timedelta(days=31)


class Availability:
    """Enreach user status codes (product guide's presence table)."""

    AVAILABLE = 0
    BUSY = 1
    DND = 2
    OFF_WORK = 3
    AWAY = 5
    ALL = (AVAILABLE, BUSY, DND, OFF_WORK, AWAY)


class EnreachError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"Enreach API: HTTP {status}: {message}" if status else f"Enreach API: {message}")


class EnreachAuthError(EnreachError):
    """401: ENREACH_USER / ENREACH_SECRET_KEY were refused."""


class EnreachUnavailable(EnreachError):
    """Throttled, 5xx or unreachable after the retry policy ran out."""


@dataclass(frozen=True)
class EnreachUser:
    id: str
    email: str
    first_name: str
    last_name: str
    mobile_number: str | None
    work_number: str | None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> EnreachUser:
        # Field names UNCONFIRMED beyond Id (users/me) and Email (directory entries).
        return cls(
            id=str(item["Id"]),
            email=str(item.get("Email") or ""),
            first_name=str(item.get("FirstName") or ""),
            last_name=str(item.get("LastName") or ""),
            mobile_number=item.get("MobileNumber") or None,
            work_number=item.get("WorkNumber") or None,
        )


@dataclass(frozen=True)
class EnreachCall:
    """One user call event. Field names beyond CallId and StartTime are UNCONFIRMED."""

    call_id: str
    user_id: str | None
    start: datetime
    end: datetime | None
    direction: str  # "in" or "out"
    other_number: str | None
    duration_seconds: int
    classification: str  # "Work", "Private" or "Unclassified"
    is_mobile: bool
    modified: datetime | None
    recording_ids: tuple[str, ...] = ()

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> EnreachCall:
        start = parse_time(item["StartTime"])
        end = parse_time(item["EndTime"]) if item.get("EndTime") else None
        return cls(
            call_id=str(item["CallId"]),
            user_id=str(item["UserId"]) if item.get("UserId") else None,
            start=start,
            end=end,
            direction="out" if str(item.get("Direction", "")).lower() in ("out", "outgoing", "1") else "in",
            other_number=item.get("OtherNumber") or None,
            duration_seconds=int(item.get("DurationInSeconds") or 0),
            classification=str(item.get("Classification") or "Unclassified"),
            is_mobile=bool(item.get("IsMobile", False)),
            modified=parse_time(item["Modified"]) if item.get("Modified") else None,
            recording_ids=tuple(str(r) for r in item.get("RecordingIds") or ()),
        )


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("pass timezone-aware datetimes to the Enreach client")
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """Enreach times are UTC; accept ``YYYY-MM-DD HH:MM:SS`` and ISO 8601."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _raise_for(response: requests.Response) -> None:
    if response.status_code < 400:
        return
    message = response.text[:300]
    if response.status_code == 401:
        raise EnreachAuthError(401, "credentials refused: check ENREACH_USER and ENREACH_SECRET_KEY")
    if response.status_code == 429 or response.status_code >= 500:
        raise EnreachUnavailable(response.status_code, message)
    raise EnreachError(response.status_code, message)


def _send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy,
    timeout: float,
    deadline: float | None = None,
    **kwargs: Any,
) -> requests.Response:
    try:
        response = send_with_retry(
            session,
            method,
            url,
            policy=policy,
            timeout=timeout,
            idempotent=method in ("GET", "PUT", "DELETE"),
            deadline=deadline,
            **kwargs,
        )
    except RetryExhausted as exc:
        status = exc.response.status_code if exc.response is not None else 0
        raise EnreachUnavailable(status, str(exc)) from exc
    except requests.RequestException as exc:
        raise EnreachUnavailable(0, f"{exc.__class__.__name__} talking to {url.split('?')[0]}") from exc
    _raise_for(response)
    return response


def discover_api_url(
    email: str,
    *,
    discovery_url: str = "https://discover.enreachvoice.com",
    session: requests.Session | None = None,
    timeout: float = 10.0,
    retry: RetryPolicy = RetryPolicy(),
) -> str:
    """The REST API address of the silo that hosts ``email`` (no trailing slash)."""
    own = session is None
    session = session or requests.Session()
    try:
        response = _send(
            session,
            "GET",
            discovery_url.rstrip("/") + DISCOVERY_PATH,
            params={"user": email},
            headers={"Accept": "application/json"},
            policy=retry,
            timeout=timeout,
        )
        items = response.json()
    finally:
        if own:
            session.close()
    if not isinstance(items, list) or not items or not items[0].get("apiEndpoint"):
        raise EnreachError(0, f"discovery knows no Enreach user {email!r}: check ENREACH_USER")
    return str(items[0]["apiEndpoint"]).rstrip("/")


class EnreachClient:
    """Basic-authenticated client of one Enreach API user.

    ``api_url`` skips discovery (test environments, the emulator); otherwise the
    address is discovered on first use and kept for the life of the client.
    """

    def __init__(
        self,
        user: str,
        secret_key: str,
        *,
        api_url: str | None = None,
        discovery_url: str = "https://discover.enreachvoice.com",
        session: requests.Session | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._user = user
        self._session = session or requests.Session()
        self._session.auth = (user, secret_key)
        self._api_url = api_url.rstrip("/") if api_url else None
        self._discovery_url = discovery_url
        self._timeout = timeout
        self._retry = retry
        self._lock = threading.Lock()

    @property
    def api_url(self) -> str:
        with self._lock:
            if self._api_url is None:
                self._api_url = discover_api_url(
                    self._user,
                    discovery_url=self._discovery_url,
                    session=self._session,
                    timeout=self._timeout,
                    retry=self._retry,
                )
            return self._api_url

    def close(self) -> None:
        self._session.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        deadline: float | None = None,
    ) -> Any:
        response = _send(
            self._session,
            method,
            f"{self.api_url}/{path}",
            params=params,
            json=json,
            headers=HEADERS,
            policy=self._retry,
            timeout=self._timeout,
            deadline=deadline,
        )
        return response.json() if response.content else None

    # -- resources ----------------------------------------------------------------

    def me(self) -> EnreachUser:
        return EnreachUser.from_api(self._call("GET", "users/me"))

    def users(self) -> list[EnreachUser]:
        """Every user of the organisation. Path UNCONFIRMED (``GET users``)."""
        return [EnreachUser.from_api(item) for item in self._call("GET", "users") or []]

    def calls(
        self, start: datetime, end: datetime, *, by: str = "modified", deadline: float | None = None
    ) -> list[EnreachCall]:
        """User call events in [start, end): by ``modified`` time (sync) or ``start`` time (backfill).

        Longer ranges than Enreach's 31-day limit are split into several requests.
        """
        if by not in ("modified", "start"):
            raise ValueError("by must be 'modified' or 'start'")
        names = ("ModifiedAfter", "ModifiedBefore") if by == "modified" else ("StartTime", "EndTime")
        calls: list[EnreachCall] = []
        window_start = start
        while window_start < end:
            window_end = min(end, window_start + MAX_CALL_RANGE)
            params = {names[0]: format_time(window_start), names[1]: format_time(window_end)}
            calls += [
                EnreachCall.from_api(item)
                for item in self._call("GET", "calls", params=params, deadline=deadline) or []
            ]
            window_start = window_end
        return calls

    def get_availability(self, user_id: str) -> int:
        """The user's current status code. Path and field UNCONFIRMED."""
        body = self._call("GET", f"users/{quote(user_id, safe='')}/availability")
        return int(body["Availability"])

    def set_availability(self, user_id: str, status: int, *, deadline: float | None = None) -> None:
        """Set the user's status code (see ``Availability``). Path and field UNCONFIRMED."""
        if status not in Availability.ALL:
            raise ValueError(f"unknown Enreach availability {status}")
        self._call(
            "PUT", f"users/{quote(user_id, safe='')}/availability", json={"Availability": status}, deadline=deadline
        )

    def callbacks(self, modified_after: datetime, modified_before: datetime) -> list[dict[str, Any]]:
        """Callback requests modified in the range. Path and fields UNCONFIRMED."""
        params = {"ModifiedAfter": format_time(modified_after), "ModifiedBefore": format_time(modified_before)}
        result: list[dict[str, Any]] = self._call("GET", "callbackrequests", params=params) or []
        return result

    def queues(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "queues") or []
        return result


def users_by_email(users: Sequence[EnreachUser]) -> dict[str, EnreachUser]:
    """Index users by lower-cased e-mail (Enreach e-mails are case-insensitive)."""
    return {u.email.lower(): u for u in users if u.email}


# -- webhook notifications (Enreach -> us) ------------------------------------------------
# Payload shapes are UNCONFIRMED (../shared/reference/enreach-api.md): this is the one place
# that reads them. Event names follow the product guide's plugin events.

_CALL_START = {"call-incoming", "call-answered", "call-started", "callincoming", "callanswered", "callstarted"}
_CALL_END = {"call-ended", "callended"}
_USER_STATUS = {"user-status-changed", "userstatuschanged", "userstatus"}


class EventError(ValueError):
    """A webhook notification Enreach sent could not be read; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class EnreachEvent:
    kind: str  # "user_status", "call_start" or "call_end"
    user_id: str
    status: int | None = None
    call_id: str | None = None


def parse_event(payload: Any) -> EnreachEvent:
    """``{"EventType": "call-incoming"|"call-answered"|"call-started"|"call-ended"|"user-status-changed",
    "UserId": "...", "CallId": "..." (calls), "Status": 0|1|2|3|5 (user status)}``."""
    if not isinstance(payload, Mapping):
        raise EventError("body", "the notification must be a JSON object")
    event_type = payload.get("EventType")
    if not isinstance(event_type, str) or not event_type:
        raise EventError("EventType", "EventType is missing")
    user_id = payload.get("UserId")
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 64:
        raise EventError("UserId", "UserId must be the Enreach user id (a string)")
    name = event_type.strip().lower()
    if name in _USER_STATUS:
        status = payload.get("Status")
        if isinstance(status, bool) or not isinstance(status, int) or status not in Availability.ALL:
            raise EventError("Status", f"Status must be one of {', '.join(map(str, Availability.ALL))}")
        return EnreachEvent("user_status", user_id.strip(), status=status)
    if name in _CALL_START or name in _CALL_END:
        call_id = payload.get("CallId")
        if not isinstance(call_id, str) or not call_id.strip() or len(call_id) > 128:
            raise EventError("CallId", "CallId must be a non-empty string")
        return EnreachEvent("call_start" if name in _CALL_START else "call_end", user_id.strip(), call_id=call_id)
    raise EventError("EventType", f"unknown EventType {event_type[:40]!r}")
