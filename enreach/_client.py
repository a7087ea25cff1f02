"""The Enreach REST API ("EnreachAPI", formerly BeneAPI) client.

Every vendor path and field name the app uses is in this module, so a
correction is a one-file change. Facts: ../shared/reference/enreach-api.md.
Items marked UNCONFIRMED there are marked here too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import requests

from core.retry import RetryExhausted, RetryPolicy, send_with_retry

from ._callbacks import CallbackList, CallbackRequest
from ._mapping import CallFields, EnreachMapping, ServiceCallFields, UserFields, first_present

if TYPE_CHECKING:
    from .config import EnreachConfig

__all__ = [
    "CurrentAvailability",
    "EnreachAuthError",
    "EnreachCall",
    "EnreachClient",
    "EnreachError",
    "EnreachUnavailable",
    "EnreachUser",
    "InvalidId",
    "RecordError",
    "Transcript",
    "UnmappedAvailability",
    "client_from_config",
    "discover_api_url",
    "is_id",
    "path_segment",
]

R = TypeVar("R")
log = logging.getLogger("enreach")

DISCOVERY_PATH = "/api/user"  # GET ?user=<email> -> [{"apiEndpoint": ...}]
HEADERS = {"Accept": "application/json", "Content-Type": "application/json", "X-Json-Serializer": "2"}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # UTC, as the calls resource expects
MAX_CALL_RANGE = timedelta(days=31)


class EnreachError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"Enreach API: HTTP {status}: {message}" if status else f"Enreach API: {message}")

    # Failures describe themselves: a command prints ``cause`` and ``fix`` (core/cli.py), exit 1.
    exit_code = 1

    @property
    def cause(self) -> str:
        return _first_line(self)

    @property
    def fix(self) -> str:
        return "check ENREACH_USER and ENREACH_API_URL"


class EnreachAuthError(EnreachError):
    """401: ENREACH_USER / ENREACH_SECRET_KEY were refused."""

    @property
    def cause(self) -> str:
        return "Enreach refused the credentials (HTTP 401)"

    @property
    def fix(self) -> str:
        return "check ENREACH_USER (the API user's e-mail) and ENREACH_SECRET_KEY (its secret key, not a password)"


class EnreachUnavailable(EnreachError):
    """Throttled, 5xx or unreachable after the retry policy ran out."""

    @property
    def cause(self) -> str:
        return f"Enreach did not answer or is throttling: {_first_line(self)}"

    @property
    def fix(self) -> str:
        return "check ENREACH_API_URL / ENREACH_DISCOVERY_URL and the network, then run again"


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


class UnmappedAvailability(ValueError):
    """The availability has no EventTypeID in ENREACH_FIELD_MAP.availability.event_types."""


class RecordError(ValueError):
    """An Enreach record lacks a field the app cannot do without; ``field`` is the mapping key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class EnreachUser:
    id: str
    email: str  # the login e-mail (UserName), else the directory entry's Email
    first_name: str
    last_name: str
    mobile_number: str | None
    work_number: str | None
    other_emails: tuple[str, ...] = ()  # e.g. the directory entry's Email when it differs from UserName

    @classmethod
    def from_api(cls, item: Mapping[str, Any], names: UserFields = UserFields()) -> EnreachUser:
        _, user_id = first_present(item, names.id)
        if user_id is None:
            raise RecordError("users.id", "a user record carries none of " + ", ".join(names.id))

        def text(keys: tuple[str, ...]) -> str:
            value = first_present(item, keys)[1]
            return str(value).strip() if isinstance(value, str | int) else ""

        return cls(
            id=str(user_id),
            email=text(names.email),
            first_name=text(names.first_name),
            last_name=text(names.last_name),
            mobile_number=text(names.mobile_number) or None,
            work_number=text(names.work_number) or None,
        )


def _truthy(value: Any, outgoing: tuple[str, ...]) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in outgoing


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _id_and_start(
    item: Mapping[str, Any],
    id_names: Sequence[str],
    start_names: Sequence[str],
    *,
    key: str,
    record: str,
    call: str,
    start_word: str,
) -> tuple[Any, datetime]:
    """A call-like record's id and start time, or ``RecordError`` naming the mapping key
    (``<key>.call_id`` / ``<key>.start``) that found nothing readable."""
    _, call_id = first_present(item, id_names)
    if call_id is None:
        raise RecordError(f"{key}.call_id", f"{record} carries none of " + ", ".join(id_names))
    start_text = first_present(item, start_names)[1]
    try:
        start = parse_time(str(start_text)) if start_text is not None else None
    except ValueError:
        start = None
    if start is None:
        raise RecordError(f"{key}.start", f"{call} {call_id}: no readable {start_word} in " + ", ".join(start_names))
    return call_id, start


@dataclass(frozen=True)
class EnreachCall:
    """One user call event, read through the mapping (``CallFields``)."""

    call_id: str
    user_id: str | None  # the Enreach user whose call record this is
    start: datetime
    end: datetime | None
    direction: str  # "in" or "out"
    other_number: str | None
    duration_seconds: int
    classification: str  # "Work", "Private" or "Unclassified" (no or unknown classification)
    is_mobile: bool
    modified: datetime | None
    recording_ids: tuple[str, ...] = ()
    end_result: int | None = None  # non-zero: unanswered
    user_name: str | None = None
    answer_queue_id: str | None = None
    transcript_id: str | None = None  # UNVERIFIED name (calls.transcript_id)
    queue_call: bool = False  # read from GET servicecall: a queue's call, no user's

    @classmethod
    def from_api(
        cls, item: Mapping[str, Any], names: CallFields = CallFields(), *, user_id: str | None = None
    ) -> EnreachCall:
        call_id, start = _id_and_start(
            item, names.call_id, names.start, key="calls", record="a call record", call="call", start_word="start time"
        )
        outgoing = _truthy(first_present(item, names.direction)[1], names.outgoing_values)
        if names.other_number:
            number = first_present(item, names.other_number)[1]
        else:
            number = first_present(item, names.b_number if outgoing else names.a_number)[1]
        duration = max(0, _int(first_present(item, names.duration)[1]) or 0)
        end_text = first_present(item, names.end)[1]
        try:
            end = parse_time(str(end_text)) if end_text else start + timedelta(seconds=duration)
        except ValueError:
            end = start + timedelta(seconds=duration)
        label = first_present(item, names.classification)[1]
        label_text = str(label).strip().lower() if isinstance(label, str | int) else ""
        if label_text and label_text in (v.lower() for v in names.work_values):
            classification = "Work"
        elif label_text and label_text in (v.lower() for v in names.private_values):
            classification = "Private"
        else:
            classification = "Unclassified"  # privacy first: no classification is no consent
        modified_text = first_present(item, names.modified)[1]
        try:
            modified = parse_time(str(modified_text)) if modified_text else None
        except ValueError:
            modified = None
        recordings = first_present(item, names.recording_ids)[1]
        user_name = first_present(item, names.user_name)[1]
        queue = first_present(item, names.answer_queue_id)[1]
        transcript = first_present(item, names.transcript_id)[1]
        return cls(
            call_id=str(call_id),
            user_id=user_id,
            start=start,
            end=end,
            direction="out" if outgoing else "in",
            other_number=str(number).strip() or None if isinstance(number, str | int) else None,
            duration_seconds=duration,
            classification=classification,
            is_mobile=_truthy(first_present(item, names.is_mobile)[1], ("true", "1", "yes", "mobile")),
            modified=modified,
            recording_ids=tuple(str(r) for r in recordings) if isinstance(recordings, list) else (),
            end_result=_int(first_present(item, names.end_result)[1]),
            user_name=str(user_name) if isinstance(user_name, str) else None,
            answer_queue_id=str(queue) if isinstance(queue, str) else None,
            transcript_id=str(transcript) if isinstance(transcript, str | int) else None,
        )

    @classmethod
    def from_service_call(cls, item: Mapping[str, Any], names: ServiceCallFields = ServiceCallFields()) -> EnreachCall:
        """A ``GET servicecall`` record as an incoming queue call (no user; Work: the company's line)."""
        call_id, start = _id_and_start(
            item,
            names.call_id,
            names.start,
            key="service_calls",
            record="a servicecall record",
            call="queue call",
            start_word="start",
        )
        number = first_present(item, names.caller)[1]
        queue = first_present(item, names.queue_id)[1]
        answered_by = first_present(item, names.answered_by)[1]
        end_result = _int(first_present(item, names.end_result)[1])
        if answered_by:
            end_result = 0  # somebody answered: not missed
        modified_text = first_present(item, names.modified)[1]
        try:
            modified = parse_time(str(modified_text)) if modified_text else None
        except ValueError:
            modified = None
        return cls(
            call_id=str(call_id),
            user_id=None,
            start=start,
            end=start,
            direction="in",
            other_number=str(number).strip() or None if isinstance(number, str | int) else None,
            duration_seconds=0,
            classification="Work",
            is_mobile=False,
            modified=modified,
            end_result=end_result,
            answer_queue_id=str(queue) if isinstance(queue, str | int) else None,
            user_name=str(first_present(item, names.queue_name)[1] or "") or None,
            queue_call=True,
        )


@dataclass(frozen=True)
class Transcript:
    """``GET calls/transcripts/<id>``: ``status`` "Completed", "Pending" or what Enreach said."""

    status: str
    text: str

    @property
    def completed(self) -> bool:
        return self.status == "Completed"


@dataclass(frozen=True)
class CurrentAvailability:
    """A user's current availability: ``name`` is "Available" when none is active, None when its
    EventTypeID is not in the mapping. ``end`` is when it ends (None: open-ended or unknown);
    ``shape`` says how Enreach answered (``raw_current_availability``), for the probe; ``source`` is
    its ``EventSource`` when the record carries one (the app's own availabilities carry
    ``ENREACH_FIELD_MAP.availability.event_source``)."""

    id: str | None
    type_id: int | None
    name: str | None
    end: datetime | None = None
    shape: str = "record"
    source: str | None = None


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("pass timezone-aware datetimes to the Enreach client")
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


# Microsoft's JSON date, ``/Date(1712518735000)/`` or ``/Date(1712518735000+0300)/``: what an ASP.NET
# API answers without ``X-Json-Serializer: 2`` (mokso/BeneCallArchiver sends no such header and reads
# TimeStamp as a date). The number is milliseconds since 1970-01-01 UTC; the offset only names the
# zone the value was written in (DataContractJsonSerializer, Json.NET), so the instant is the number.
_JSON_DATE = re.compile(r"^\s*\\?/Date\((-?\d+)(?:[+-]\d{4})?\)\\?/\s*$")
# Far enough in the future to mean "no end" (an open-ended availability ends in year 9999).
OPEN_ENDED_FROM = datetime(9000, 1, 1, tzinfo=UTC)


def parse_time(text: str) -> datetime:
    """Enreach times are UTC (also when they lack a ``Z``); accept ``YYYY-MM-DD HH:MM:SS``,
    ISO 8601 and JSON dates (``/Date(ms)/``, with or without an offset)."""
    match = _JSON_DATE.match(text)
    if match:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group(1)))
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class InvalidId(EnreachError):
    """A value that should be an Enreach id is not id-shaped: it never goes into a URL path (``..``
    would make ``users/../availability/current`` read ``users/availability/current``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(0, message)
        self.field = field

    @property
    def fix(self) -> str:
        return f"correct the {self.field} where it came from (an Enreach id has letters, digits, - and _ only)"


def is_id(value: object) -> bool:
    """An Enreach id as the evidence shows them (GUIDs): letters, digits, ``-`` and ``_``, at most 128."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def path_segment(value: object, field: str) -> str:
    """``value`` as one URL path segment, refused (``InvalidId``) unless it is id-shaped."""
    if not is_id(value):
        raise InvalidId(field, f"{field} is not an Enreach id (letters, digits, - and _ only): refused in a URL path")
    return str(value)


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
            service="enreach",
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

    ``api_url`` skips discovery (test environments, the emulator); otherwise the address is
    discovered on first use and kept for the life of the client. ``mapping`` names every vendor
    field (``enreach._mapping``; defaults from public evidence, ``ENREACH_FIELD_MAP`` overrides).
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
        mapping: EnreachMapping | None = None,
    ) -> None:
        self._user = user
        self._session = session or requests.Session()
        self._session.auth = (user, secret_key)
        self._api_url = api_url.rstrip("/") if api_url else None
        self._discovery_url = discovery_url
        self._timeout = timeout
        self._retry = retry
        self._lock = threading.Lock()
        self._lock_count = threading.Lock()
        self.mapping = mapping or EnreachMapping()
        self.skipped_records: dict[str, int] = {}  # unreadable call records by missing field, last calls()
        # Every HTTP request this client sent (retries included): what the call sync's budget counts.
        self.requests_sent = 0
        self._session.hooks.setdefault("response", []).append(self._count_response)

    def _count_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with self._lock_count:
            self.requests_sent += 1

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
        missing_ok: bool = False,
    ) -> Any:
        try:
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
        except EnreachError as error:
            if missing_ok and error.status == 404:
                return None
            raise
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError as exc:
            if method == "DELETE":
                return None  # done; what a DELETE answers is not read
            raise EnreachError(response.status_code, f"{path.split('?')[0]} answered no JSON") from exc

    # -- users -----------------------------------------------------------------------------

    def me(self) -> EnreachUser:
        return EnreachUser.from_api(self._call("GET", "users/me"), self.mapping.users)

    def raw_users(self) -> list[dict[str, Any]]:
        """``GET users``: every user of the organisation (mokso/PSBeneAPI Get-BAPIUser)."""
        items = self._call("GET", "users") or []
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    def raw_directory_entries(self) -> list[dict[str, Any]]:
        """The entries of the directory named ``users.directory_name`` (``Default``):
        ``GET directory`` -> ``[{ID, Name}]``, then ``GET directory/<ID>?MaxCount=1000`` -> ``{Entries}``
        (mokso/enreachvoice_mcp). Empty when the organisation has no such directory."""
        directories = self._call("GET", "directory", missing_ok=True) or []
        wanted = self.mapping.users.directory_name.lower()
        found = next(
            (d for d in directories if isinstance(d, dict) and str(d.get("Name", "")).lower() == wanted),
            None,
        )
        if found is None:
            return []
        directory_id = first_present(found, ("ID", "Id"))[1]
        body = self._call(
            "GET",
            f"directory/{path_segment(str(directory_id), 'directory id')}",
            params={"MaxCount": "1000"},
            missing_ok=True,
        )
        entries = body.get("Entries") if isinstance(body, dict) else None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def users(self, *, with_directory: bool = True) -> list[EnreachUser]:
        """Every user, completed from the ``Default`` directory where the users resource lacks an
        e-mail or a number (directory entries carry ``Email``, ``MobileNumber``, ``WorkNumber``)."""
        users: list[EnreachUser] = []
        for item in self.raw_users():
            try:
                users.append(EnreachUser.from_api(item, self.mapping.users))
            except RecordError as error:
                log.warning("Enreach user record skipped: %s", error)
        if not with_directory or all(u.email and u.mobile_number for u in users):
            return users
        by_id: dict[str, EnreachUser] = {}
        by_email: dict[str, EnreachUser] = {}
        for item in self.raw_directory_entries():
            try:
                entry = EnreachUser.from_api(item, self.mapping.users)
            except RecordError:
                continue
            by_id[entry.id.lower()] = entry
            if entry.email:
                by_email[entry.email.lower()] = entry
        merged = []
        for user in users:
            found = by_id.get(user.id.lower()) or by_email.get(user.email.lower())
            if found is not None:
                entry = found
                user = EnreachUser(
                    id=user.id,
                    email=user.email or entry.email,
                    first_name=user.first_name or entry.first_name,
                    last_name=user.last_name or entry.last_name,
                    mobile_number=user.mobile_number or entry.mobile_number,
                    work_number=user.work_number or entry.work_number,
                    other_emails=(entry.email,)
                    if entry.email and user.email and entry.email.lower() != user.email.lower()
                    else (),
                )
            merged.append(user)
        return merged

    # -- calls -----------------------------------------------------------------------------

    def raw_calls(
        self,
        start: datetime,
        end: datetime,
        *,
        by: str = "modified",
        user_id: str | None = None,
        deadline: float | None = None,
    ) -> list[dict[str, Any]]:
        """User call records in [start, end) as Enreach sends them, split at the 31-day limit.

        ``user_id`` selects whose calls (``UserIDs=<id>``, as mokso/PSBeneAPI and BeneCallArchiver
        ask); without it Enreach answers the API user's own calls."""
        if by not in ("modified", "start"):
            raise ValueError("by must be 'modified' or 'start'")
        names = ("ModifiedAfter", "ModifiedBefore") if by == "modified" else ("StartTime", "EndTime")
        records: list[dict[str, Any]] = []
        window_start = start
        while window_start < end:
            window_end = min(end, window_start + MAX_CALL_RANGE)
            params = {names[0]: format_time(window_start), names[1]: format_time(window_end)}
            if user_id:
                params["UserIDs"] = user_id
            items = self._call("GET", "calls", params=params, deadline=deadline) or []
            records += [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
            window_start = window_end
        return records

    def calls(
        self,
        start: datetime,
        end: datetime,
        *,
        by: str = "modified",
        users: Iterable[EnreachUser] | None = None,
        deadline: float | None = None,
    ) -> list[EnreachCall]:
        """The call events of ``users``, asked for as ``calls.query_mode`` says: "per_user" (each
        user's own query, ``UserIDs=<id>``, as the public clients ask), or "all" (one query for the
        organisation, each record's user read from ``calls.user_id`` or its ``UserName``; records of
        users not in ``users`` are dropped). Without ``users``: the API user's own calls.

        A record lacking its id or start time cannot be synced: it is counted in
        ``skipped_records`` (by mapping key) and logged with its field names, never its values."""
        self.skipped_records = {}
        if users is None:
            return self.read_records(self.raw_calls(start, end, by=by, deadline=deadline), None)
        users = list(users)
        if self.mapping.calls.query_mode == "all":
            return self.organisation_calls(start, end, users, by=by, deadline=deadline)
        calls: list[EnreachCall] = []
        for user in users:
            calls += self.user_calls(user, start, end, by=by, deadline=deadline)
        return calls

    def user_calls(
        self, user: EnreachUser, start: datetime, end: datetime, *, by: str = "modified", deadline: float | None = None
    ) -> list[EnreachCall]:
        """One user's call events (``UserIDs=<id>``, one request per 31-day window)."""
        return self.read_records(self.raw_calls(start, end, by=by, user_id=user.id, deadline=deadline), user.id)

    def organisation_calls(
        self,
        start: datetime,
        end: datetime,
        users: Sequence[EnreachUser],
        *,
        by: str = "modified",
        deadline: float | None = None,
    ) -> list[EnreachCall]:
        """The "all" query mode: ``GET calls`` without ``UserIDs``, one request per 31-day window;
        each record is given to its user by ``calls.user_id``, else by ``UserName`` (login e-mail)."""
        names = self.mapping.calls
        ids = {u.id.lower(): u.id for u in users}
        by_email = users_by_email(users)
        grouped: dict[str | None, list[dict[str, Any]]] = {}
        unowned = 0
        for item in self.raw_calls(start, end, by=by, deadline=deadline):
            owner = first_present(item, names.user_id)[1]
            user_id = ids.get(str(owner).lower()) if isinstance(owner, str) else None
            if user_id is None:
                login = first_present(item, names.user_name)[1]
                found = by_email.get(login.strip().lower()) if isinstance(login, str) else None
                user_id = found.id if found else None
            if user_id is None:
                unowned += 1
                continue
            grouped.setdefault(user_id, []).append(item)
        if unowned:
            self.skipped_records["calls.user_id"] = unowned  # no known user by id or UserName
            log.warning(
                "%d Enreach call records name no known user (by %s or %s): skipped",
                unowned,
                "/".join(names.user_id) or "-",
                "/".join(names.user_name) or "-",
            )
        calls: list[EnreachCall] = []
        for user_id, items in grouped.items():
            calls += self.read_records(items, user_id)
        return calls

    def read_records(self, items: Iterable[dict[str, Any]], user_id: str | None) -> list[EnreachCall]:
        """Call records read through the mapping; unreadable ones counted in ``skipped_records``."""
        return self._parse_each(
            items, lambda item: EnreachCall.from_api(item, self.mapping.calls, user_id=user_id), "call record"
        )

    def _parse_each(self, items: Iterable[dict[str, Any]], parse: Callable[[dict[str, Any]], R], what: str) -> list[R]:
        """Each record through ``parse``; one unreadable for lack of a mapped field is counted in
        ``skipped_records`` (by mapping key) and logged once per key with its field names."""
        found: list[R] = []
        for item in items:
            try:
                found.append(parse(item))
            except RecordError as error:
                if error.field not in self.skipped_records:
                    log.warning(
                        "Enreach %s unreadable (%s); its fields: %s. Set ENREACH_FIELD_MAP.%s",
                        what,
                        error,
                        ", ".join(sorted(item)),
                        error.field,
                    )
                self.skipped_records[error.field] = self.skipped_records.get(error.field, 0) + 1
        return found

    def raw_service_calls(
        self, start: datetime, end: datetime, *, by: str = "modified", deadline: float | None = None
    ) -> list[dict[str, Any]]:
        """``GET servicecall``: inbound queue calls in [start, end), split at the 31-day limit
        (mokso/enreachvoice ``get_inbound_queuecalls``; same time filters as ``GET calls``)."""
        names = ("ModifiedAfter", "ModifiedBefore") if by == "modified" else ("StartTime", "EndTime")
        records: list[dict[str, Any]] = []
        window_start = start
        while window_start < end:
            window_end = min(end, window_start + MAX_CALL_RANGE)
            params = {names[0]: format_time(window_start), names[1]: format_time(window_end)}
            items = self._call("GET", "servicecall", params=params, deadline=deadline) or []
            records += [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
            window_start = window_end
        return records

    def service_calls(
        self, start: datetime, end: datetime, *, by: str = "modified", deadline: float | None = None
    ) -> list[EnreachCall]:
        """Queue calls through ``ENREACH_FIELD_MAP.service_calls``; unreadable records are counted
        in ``skipped_records`` (by mapping key), as user call records are."""
        return self._parse_each(
            self.raw_service_calls(start, end, by=by, deadline=deadline),
            lambda item: EnreachCall.from_service_call(item, self.mapping.service_calls),
            "servicecall record",
        )

    def transcript(self, transcript_id: str, *, deadline: float | None = None) -> Transcript | None:
        """``GET calls/transcripts/<id>`` read through ``ENREACH_FIELD_MAP.transcripts``; None when
        Enreach knows no such transcript (404)."""
        names = self.mapping.transcripts
        if not is_id(transcript_id):  # it goes into the URL path: `..` would address another resource
            log.warning("a call names a transcript id that is not id-shaped: not read")
            return None
        segment = path_segment(transcript_id, "calls.transcript_id")
        body = self._call("GET", f"calls/transcripts/{segment}", deadline=deadline, missing_ok=True)
        if not isinstance(body, dict):
            return None
        status = str(first_present(body, names.status)[1] or "")
        text = first_present(body, names.text)[1]
        if status.lower() in (v.lower() for v in names.completed_values):
            status = "Completed"
        elif status.lower() in (v.lower() for v in names.pending_values):
            status = "Pending"
        return Transcript(status, str(text) if isinstance(text, str) else "")

    # -- availability ----------------------------------------------------------------------
    # Availabilities are events with a lifetime (mokso/enreachvoice Example.ipynb).

    def raw_current_availability(
        self, user_id: str, *, deadline: float | None = None
    ) -> tuple[str, dict[str, Any] | None]:
        """``GET users/<id>/availability/current`` and how it answered: ``(shape, record)``.

        What "none active" looks like is not public, so every plausible shape is read as
        Available: ``204`` (no body), ``404``, ``null``, ``{}``, an empty list (shapes "204",
        "404", "null", "{}", "[]"); a list holds the active one last ("list"); else "record"."""
        path = f"users/{path_segment(user_id, 'user id')}/availability/current"
        try:
            response = _send(
                self._session,
                "GET",
                f"{self.api_url}/{path}",
                headers=HEADERS,
                policy=self._retry,
                timeout=self._timeout,
                deadline=deadline,
            )
        except EnreachError as error:
            if error.status == 404:
                return "404", None
            raise
        if response.status_code == 204 or not response.content.strip():
            return "204", None
        try:
            body = response.json()
        except ValueError as exc:
            raise EnreachError(response.status_code, f"{path.split('/')[-1]} answered no JSON") from exc
        if body is None:
            return "null", None
        if isinstance(body, list):
            records = [b for b in body if isinstance(b, dict) and b]
            return ("list", records[-1]) if records else ("[]", None)
        if isinstance(body, dict):
            return ("record", body) if body else ("{}", None)
        raise EnreachError(response.status_code, f"availability answered a JSON {type(body).__name__}")

    def current_availability(
        self, user_id: str, *, deadline: float | None = None, now: datetime | None = None
    ) -> CurrentAvailability:
        """The active availability; none active counts as Available (Enreach wiki), and so does a
        record with no EventTypeID, one whose type or name is in ``availability.available_values``,
        and one whose end time has passed. An end past year 9000 is open-ended (``end`` None)."""
        names = self.mapping.availability
        shape, body = self.raw_current_availability(user_id, deadline=deadline)
        if body is None:
            return CurrentAvailability(None, None, "Available", shape=shape)
        availability_id = first_present(body, names.id)[1]
        type_id = _int(first_present(body, names.event_type)[1])
        type_name = first_present(body, names.type_name)[1]
        available = {v.strip().lower() for v in names.available_values}
        end: datetime | None = None
        end_text = first_present(body, names.end_time)[1]
        if end_text is not None:
            try:
                end = parse_time(str(end_text))
            except ValueError:
                end = None  # unreadable: treated as open-ended, never as ended
        if end is not None and end >= OPEN_ENDED_FROM:
            end = None
        if (
            type_id is None
            or str(type_id) in available
            or (isinstance(type_name, str) and type_name.strip().lower() in available)
            or (end is not None and end <= (now or datetime.now(UTC)))
        ):
            return CurrentAvailability(None, type_id, "Available", shape=shape)
        source = body.get(names.event_source_field)
        return CurrentAvailability(
            str(availability_id) if availability_id is not None else None,
            type_id,
            names.name_of(type_id),
            end,
            shape,
            source if isinstance(source, str) else None,
        )

    def end_availability(self, user_id: str, availability_id: str, *, deadline: float | None = None) -> None:
        """``DELETE users/<id>/availability/<Id>``; an availability already gone is fine."""
        self._call(
            "DELETE",
            f"users/{path_segment(user_id, 'user id')}/availability/{path_segment(availability_id, 'availability id')}",
            deadline=deadline,
            missing_ok=True,
        )

    def set_availability(self, user_id: str, name: str, *, deadline: float | None = None) -> str | None:
        """Make ``name`` the user's availability; answers the id of the availability now active.

        "Available" ends the active availabilities (none active is Available). Another name
        starts a new availability (``POST``) unless that type is active already. Raises
        ``UnmappedAvailability`` for a name with no EventTypeID in the mapping."""
        names = self.mapping.availability
        if name == "Available":
            for _ in range(3):  # availabilities may stack: end what surfaces, a few deep at most
                current = self.current_availability(user_id, deadline=deadline)
                if current.id is None:
                    return None
                self.end_availability(user_id, current.id, deadline=deadline)
            return None
        current = self.current_availability(user_id, deadline=deadline)
        if current.type_id is not None and current.type_id == names.type_id(name):
            return current.id
        return self.start_availability(user_id, name, deadline=deadline)

    def start_availability(self, user_id: str, name: str, *, deadline: float | None = None) -> str | None:
        """``POST users/<id>/availability``: start ``name`` on top of whatever is active; answers its id.
        Raises ``UnmappedAvailability`` for a name with no EventTypeID in the mapping."""
        names = self.mapping.availability
        type_id = names.type_id(name)
        if type_id is None:
            raise UnmappedAvailability(
                f"the Enreach availability {name!r} has no EventTypeID: set "
                f"ENREACH_FIELD_MAP.availability.event_types.{name} (python -m ops probe-enreach lists those seen)"
            )
        body = self._call(
            "POST",
            f"users/{path_segment(user_id, 'user id')}/availability",
            json={
                names.event_type[0]: type_id,
                names.event_source_field: names.event_source,
                names.note_field: f"{name} (Dynamics 365 presence)",
                names.user_id_field: user_id,
            },
            deadline=deadline,
        )
        created = first_present(body, names.id)[1] if isinstance(body, dict) else None
        return str(created) if created is not None else None

    # -- callback requests (paths and fields: ENREACH_FIELD_MAP.callbacks, UNVERIFIED) -------

    def _callback_path(self, template: str, request_id: str) -> str:
        return template.replace("{id}", path_segment(request_id, "callback request id"))

    def raw_callback_lists(self, *, deadline: float | None = None) -> list[dict[str, Any]] | None:
        """The callback lists as Enreach sends them; None when the path answers 404 (no such
        resource for this tenant, or a wrong ``callbacks.lists_path``)."""
        body = self._call("GET", self.mapping.callbacks.lists_path, deadline=deadline, missing_ok=True)
        if body is None:
            return None
        return [i for i in body if isinstance(i, dict)] if isinstance(body, list) else []

    def callback_lists(self, *, deadline: float | None = None) -> list[CallbackList]:
        lists = [
            CallbackList.from_api(i, self.mapping.callbacks) for i in self.raw_callback_lists(deadline=deadline) or []
        ]
        return [i for i in lists if i is not None]

    def raw_callbacks(self, start: datetime, end: datetime, *, deadline: float | None = None) -> list[dict[str, Any]]:
        """Callback requests modified in [start, end), split at the 31-day limit the calls resource has."""
        names = self.mapping.callbacks
        records: list[dict[str, Any]] = []
        window_start = start
        while window_start < end:
            window_end = min(end, window_start + MAX_CALL_RANGE)
            params = {
                names.modified_after_param: format_time(window_start),
                names.modified_before_param: format_time(window_end),
            }
            items = self._call("GET", names.items_path, params=params, deadline=deadline) or []
            records += [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
            window_start = window_end
        return records

    def callbacks(self, start: datetime, end: datetime, *, deadline: float | None = None) -> list[CallbackRequest]:
        """The requests modified in [start, end); unreadable ones are counted in ``skipped_records``."""
        self.skipped_records = {}
        return self._parse_each(
            self.raw_callbacks(start, end, deadline=deadline),
            lambda item: CallbackRequest.from_api(item, self.mapping.callbacks),
            "callback request",
        )

    def callback(self, request_id: str, *, deadline: float | None = None) -> CallbackRequest | None:
        """One request by id; None when Enreach does not know it (404)."""
        body = self._call(
            "GET",
            self._callback_path(self.mapping.callbacks.item_path, request_id),
            deadline=deadline,
            missing_ok=True,
        )
        if not isinstance(body, dict) or not body:
            return None
        return CallbackRequest.from_api(body, self.mapping.callbacks)

    def close_callback(self, request_id: str, *, handled: bool, deadline: float | None = None) -> bool:
        """Close a request (``POST callbacks.close_path``, UNVERIFIED: no public write API); False
        when Enreach does not know it (404). Closing twice is harmless: the request stays closed."""
        names = self.mapping.callbacks
        resolution = names.handled_values[0] if handled and names.handled_values else "Cancelled"
        try:
            self._call(
                "POST",
                self._callback_path(names.close_path, request_id),
                json={names.resolution[0] if names.resolution else "Resolution": resolution},
                deadline=deadline,
            )
        except EnreachError as error:
            if error.status == 404:
                return False
            raise
        return True

    # -- other resources -------------------------------------------------------------------

    def queues(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "queues") or []
        return result


def client_from_config(config: EnreachConfig, **options: Any) -> EnreachClient:
    """The app's Enreach client for the Enreach section (``options`` override, e.g. ``retry``)."""
    options.setdefault("api_url", config.api_url)
    options.setdefault("discovery_url", config.discovery_url)
    options.setdefault("timeout", config.timeout)
    options.setdefault("mapping", config.mapping)
    return EnreachClient(config.user, config.secret_key, **options)


def users_by_email(users: Sequence[EnreachUser]) -> dict[str, EnreachUser]:
    """Index users by lower-cased e-mail, login (UserName) first, then other known addresses
    (Enreach e-mails are case-insensitive)."""
    index: dict[str, EnreachUser] = {}
    for user in users:
        for address in user.other_emails:
            index.setdefault(address.lower(), user)
    for user in users:
        if user.email:
            index[user.email.lower()] = user
    return index
