"""Every Enreach vendor name the app reads or writes, in one place.

Enreach publishes no field list for call records, users, availabilities or webhook bodies.
The defaults below follow public client code that works against the real API (sources in
``../shared/reference/enreach-api.md``, "Evidence from public client code"); names no public
source settles are marked UNVERIFIED and are settings like the rest. An operator overrides any
of them with one JSON app setting, ``ENREACH_FIELD_MAP``, merged over these defaults::

    {"calls": {"classification": "CallClass", "work_values": ["W"], "transcript_id": "TranscriptGuid"},
     "service_calls": {"queue_id": "ServiceQueueId"},
     "availability": {"event_types": {"Busy": 7}}}

``python -m ops probe-enreach`` reads real records from the tenant and says which names it found.

Field entries are lists of names: the first one a record carries is used (variants such as
``CallId``/``CallID`` are tolerated that way).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = [
    "AVAILABILITY_NAMES",
    "QUERY_MODES",
    "STOPS_QUEUE_CALLS",
    "AvailabilityMap",
    "CallFields",
    "CallbackFields",
    "EnreachMapping",
    "EventMap",
    "FieldMapError",
    "ServiceCallFields",
    "TranscriptFields",
    "UserFields",
    "first_present",
    "parse_field_map",
]

# Enreach user availabilities (Enreach wiki "User Availability, Presence and UserStatus").
# "Available" is the absence of an active availability: it has no EventTypeID of its own.
AVAILABILITY_NAMES = ("Available", "Busy", "Away", "BRB", "DND", "OffWork")
# The availabilities that stop service-queue calls (same wiki page).
STOPS_QUEUE_CALLS = frozenset({"DND", "OffWork"})
# How call records are asked for (CallFields.query_mode).
QUERY_MODES = ("per_user", "all")


class FieldMapError(ValueError):
    """``ENREACH_FIELD_MAP`` is malformed; ``key`` names the culprit (e.g. ``calls.duration``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"ENREACH_FIELD_MAP.{key}: {message}")


@dataclass(frozen=True)
class CallFields:
    """``GET calls`` records (user call events)."""

    # Evidence: mokso/BeneCallArchiver sqlite-functions.ps1 reads $call.CallID, the README of
    # mokso/enreachvoice prints call['CallId'].
    call_id: tuple[str, ...] = ("CallId", "CallID")
    a_number: tuple[str, ...] = ("ANum",)  # the calling number (BeneCallArchiver)
    b_number: tuple[str, ...] = ("BNum",)  # the called number (BeneCallArchiver)
    # Overrides the direction rule (incoming: ANum, outgoing: BNum) when a tenant has one field.
    other_number: tuple[str, ...] = ()
    start: tuple[str, ...] = ("StartTime", "TimeStamp")  # enreachvoice README; BeneCallArchiver
    end: tuple[str, ...] = ()  # UNVERIFIED: no public client reads an end time; start + Duration
    direction: tuple[str, ...] = ("Direction",)  # BeneCallArchiver: if ($call.Direction) {"Out"}
    outgoing_values: tuple[str, ...] = ("true", "1", "out", "outgoing")  # compared lower-cased
    duration: tuple[str, ...] = ("Duration",)  # seconds (BeneCallArchiver)
    end_result: tuple[str, ...] = ("EndResult",)  # non-zero = unanswered (BeneCallArchiver)
    recording_ids: tuple[str, ...] = ("RecordingIds",)  # list of ids (BeneCallArchiver)
    user_name: tuple[str, ...] = ("UserName",)  # the user's login e-mail (BeneCallArchiver)
    answer_queue_id: tuple[str, ...] = ("AnswerQueueId",)  # enreach-api.md
    call_type: tuple[str, ...] = ("CallTypeString",)  # BeneCallArchiver (informational)
    # UNVERIFIED, and the default name is probably wrong: no public source names the privacy
    # class's field. In EnreachAPI "classification" is the call *tagging* API
    # (``/classification/instance`` with ``TagSchemaId``, ``TagSelections``: mokso/enreachvoice
    # classifications.py, types.py), not the Work/Private setting; run ``python -m ops
    # probe-enreach`` and set the real name. The Voice Center names the values Work, Private and
    # Undefined (Enreach wiki "History"); the Dynamics guide says "Unclassified" for the last.
    # Privacy first: a call without the field, or with any other value, is unclassified.
    classification: tuple[str, ...] = ("Classification",)
    work_values: tuple[str, ...] = ("Work",)
    private_values: tuple[str, ...] = ("Private",)
    # Read as unclassified (as any unknown value is); listed so the probe can tell a known
    # "not classified yet" from a value the mapping does not know.
    unclassified_values: tuple[str, ...] = ("Undefined", "Unclassified")
    # UNVERIFIED: whether the call was made on the mobile terminal (mobile calls sync only for
    # users whose mobile number is on their Dataverse user, product guide).
    is_mobile: tuple[str, ...] = ("IsMobile",)
    # UNVERIFIED: the records' modification time (the query takes ModifiedAfter/ModifiedBefore).
    modified: tuple[str, ...] = ()
    # UNVERIFIED: the id of the user a record belongs to. Per-user queries know it from the
    # question (UserIDs=<id>); in "all" mode it is read from the record, else its UserName (the
    # user's login e-mail, BeneCallArchiver) is looked up among GET users.
    user_id: tuple[str, ...] = ("UserId", "UserID")
    # How calls are asked for (UNVERIFIED which the tenant answers; ``probe-enreach`` tests both):
    # "per_user": one GET calls?UserIDs=<id> per user and 31-day window, as every public client
    # does (mokso/PSBeneAPI, BeneCallArchiver, enreachvoice); "all": one GET calls without
    # UserIDs over the window, answered with the whole organisation's calls where the API user
    # may read everyone's (not public whether any tenant does: the probe says).
    query_mode: str = "per_user"
    # UNVERIFIED: how a call record names its transcript (GET calls/transcripts/<id>); no public
    # source shows it (enreach-api.md). Without the field, no transcript is looked for.
    transcript_id: tuple[str, ...] = ("TranscriptId", "TranscriptID")


@dataclass(frozen=True)
class ServiceCallFields:
    """``GET servicecall`` records: inbound queue calls (mokso/enreachvoice client.py
    ``get_inbound_queuecalls``: same StartTime/EndTime and ModifiedAfter/ModifiedBefore filters as
    user calls). No public source shows a servicecall record, so every name below is UNVERIFIED:
    the defaults reuse the user call records' evidence names where a queue call would carry the
    same fact, and the probe reports which names a tenant's records carry."""

    call_id: tuple[str, ...] = ("CallId", "CallID")  # UNVERIFIED (user calls: CallId)
    caller: tuple[str, ...] = ("ANum", "CallerNumber")  # UNVERIFIED (user calls: ANum)
    start: tuple[str, ...] = ("StartTime", "TimeStamp", "ArrivalTime")  # UNVERIFIED
    queue_id: tuple[str, ...] = ("QueueId", "QueueID", "AnswerQueueId")  # UNVERIFIED
    queue_name: tuple[str, ...] = ("QueueName",)  # UNVERIFIED (informational, in the subject)
    # UNVERIFIED: non-zero = nobody answered (as EndResult on user calls, BeneCallArchiver)
    end_result: tuple[str, ...] = ("EndResult",)
    # UNVERIFIED: the user who answered; a record naming one was answered whatever EndResult says
    answered_by: tuple[str, ...] = ("AnsweredBy", "AnsweringUserId", "UserId")
    modified: tuple[str, ...] = ()  # UNVERIFIED


@dataclass(frozen=True)
class TranscriptFields:
    """``GET calls/transcripts/<id>`` (mokso/enreachvoice client.py ``get_transcript``):
    ``TranscriptStatus`` Pending or Completed, and ``Text``."""

    status: tuple[str, ...] = ("TranscriptStatus",)
    text: tuple[str, ...] = ("Text",)
    completed_values: tuple[str, ...] = ("Completed",)
    pending_values: tuple[str, ...] = ("Pending",)


@dataclass(frozen=True)
class UserFields:
    """``GET users`` records and the ``Default`` directory's entries."""

    id: tuple[str, ...] = ("Id", "ID")  # users/me -> Id (enreachvoice); directory entries Id
    email: tuple[str, ...] = ("UserName", "Email")  # PSBeneAPI filters users on UserName
    mobile_number: tuple[str, ...] = ("MobileNumber",)  # directory entries (enreachvoice_mcp)
    work_number: tuple[str, ...] = ("WorkNumber",)  # directory entries (enreachvoice_mcp)
    first_name: tuple[str, ...] = ("FirstName",)
    last_name: tuple[str, ...] = ("LastName",)
    directory_name: str = "Default"  # the directory whose entries complete the users (enreachvoice_mcp)


@dataclass(frozen=True)
class AvailabilityMap:
    """Availabilities are events with a lifetime (mokso/enreachvoice Example.ipynb):
    ``GET users/<id>/availability/current``, ``POST users/<id>/availability`` with
    ``{"EventTypeID", "EventSource", "Note", "UserID"}`` (answers the new availability with its
    ``Id``), ``DELETE users/<id>/availability/<Id>``."""

    id: tuple[str, ...] = ("Id", "ID")
    event_type: tuple[str, ...] = ("EventTypeID", "EventTypeId")
    event_source_field: str = "EventSource"
    note_field: str = "Note"
    user_id_field: str = "UserID"
    event_source: str = "Dynamics 365 bridge"
    # UNVERIFIED: when the availability ends. Public evidence (mokso/benerte-chrome-extension,
    # real-time ``endTime``) shows an end past year 9999 meaning open-ended ("Continuous" in the
    # old Voice Center, wiki 547192841) and end times in UTC even without a "Z". An availability
    # whose end has passed is no longer active (Available).
    end_time: tuple[str, ...] = ("EndTime", "endTime")
    # UNVERIFIED: a name the record may carry for its availability (real-time ``availability``).
    type_name: tuple[str, ...] = ("Availability", "availability")
    # What "none active" may look like besides an empty answer (204, 404, null, {}: which one the
    # tenant sends is not public; ``probe-enreach`` reports it): a record whose EventTypeID (as
    # text) or name is one of these is Available. Add the tenant's number, e.g. ["Available", "0"].
    available_values: tuple[str, ...] = ("Available",)
    # Availability name -> EventTypeID. Only DND = 3 is in public evidence; the others are
    # UNVERIFIED and therefore unset: an unset availability is neither written nor read back
    # (logged), until an operator sets its number from `python -m ops probe-enreach`.
    event_types: Mapping[str, int | None] = field(
        default_factory=lambda: {"Busy": None, "Away": None, "BRB": None, "DND": 3, "OffWork": None}
    )

    def type_id(self, name: str) -> int | None:
        return self.event_types.get(name)

    def name_of(self, type_id: int) -> str | None:
        return next((n for n, v in self.event_types.items() if v == type_id), None)


@dataclass(frozen=True)
class EventMap:
    """Webhook notifications (Enreach -> us), configured by Enreach support per endpoint
    (doc.enreachvoice.com/webhooks), with a shared ``Secret`` sent in a header (the header's name is
    a setting, ``ENREACH_WEBHOOK_SECRET_HEADER``). No public source shows an Enreach Voice webhook
    body: the envelope ``Id, Timestamp, RootEntityType, RootEntityId, EntityType, EntityId,
    EventType`` comes from a parser for HeroBase, another Enreach product (enreach-api.md, "Evidence
    found 2026-12"), so a flat body (the event's own fields at the top) and a body that nests them
    (``payload``) are read too, every name through the lists below. All UNVERIFIED."""

    event_type: tuple[str, ...] = ("EventType", "eventType")
    event_id: tuple[str, ...] = ("Id",)
    timestamp: tuple[str, ...] = ("Timestamp", "timestamp")
    # UNVERIFIED: where the user and the call are named; explicit fields win over the envelope ids.
    user_id: tuple[str, ...] = ("UserId", "UserID", "userId", "EntityId")
    call_id: tuple[str, ...] = ("CallId", "CallID", "callId", "RootEntityId")
    # UNVERIFIED: objects whose fields are the event's own (read after the top-level fields).
    payload: tuple[str, ...] = ("Data", "data", "Payload", "payload")
    # EventType -> what it means to the app. QueueCallInAllocated / QueueCallInConnected are
    # documented subscription types; no public source names the call-end or availability
    # change types: with none mapped, call starts are not acted on (an agent put in DND with no
    # way to hear the call end would stay there) and the operator is told once per type.
    call_start: tuple[str, ...] = ("QueueCallInAllocated", "QueueCallInConnected")
    call_end: tuple[str, ...] = ()
    availability_changed: tuple[str, ...] = ()

    def kind_of(self, event_type: str) -> str | None:
        lowered = event_type.strip().lower()
        for kind, names in (
            ("call_start", self.call_start),
            ("call_end", self.call_end),
            ("availability", self.availability_changed),
        ):
            if lowered in (n.lower() for n in names):
                return kind
        return None


@dataclass(frozen=True)
class CallbackFields:
    """Callback requests (lists of open requests with due and expiry times; Enreach wiki 1570898000).

    Evidence (``../shared/reference/enreach-api.md``, "callback requests"): items carry
    ``CallbackListId`` (mokso/enreachvoice README); the classification API names an item by
    ``CallbackListItemId`` and calls it a ``CallListItem``; ``/classification/calllistschemas``
    answers ``ListId, ListName, SchemaId, RequestTypeId``; the real-time API's event names are
    ``CallbackCreated``, ``CallbackUpdated``, ``CallbackChanged``, ``CallbackClosed`` (benerte).
    The REST paths and every other item field are UNVERIFIED: nothing public names them.
    ``python -m ops probe-enreach`` reports which of them a tenant's records carry."""

    # -- paths (UNVERIFIED: not public; the probe says when a path answers 404) ----------------
    lists_path: str = "callbacklists"  # GET -> the callback lists
    items_path: str = "callbacks"  # GET ?<modified_after>&<modified_before> -> changed requests
    item_path: str = "callbacks/{id}"  # GET -> one request (notifications are read back through it)
    close_path: str = "callbacks/{id}/close"  # POST {<resolution field>: ...}; used only when enabled
    modified_after_param: str = "ModifiedAfter"  # as GET calls takes them (evidence for calls only)
    modified_before_param: str = "ModifiedBefore"
    # -- list fields ---------------------------------------------------------------------------
    list_id: tuple[str, ...] = ("ListId", "CallbackListId", "Id")  # calllistschemas: ListId
    list_name: tuple[str, ...] = ("ListName", "Name")  # calllistschemas: ListName
    list_queue_id: tuple[str, ...] = ("QueueId",)  # UNVERIFIED: the service queue a list belongs to
    # -- item fields ---------------------------------------------------------------------------
    id: tuple[str, ...] = ("CallbackListItemId", "Id")  # classification filter: CallbackListItemId
    item_list_id: tuple[str, ...] = ("CallbackListId",)  # mokso/enreachvoice README
    item_list_name: tuple[str, ...] = ("CallbackListName", "ListName")  # UNVERIFIED
    number: tuple[str, ...] = ("ContactNumber", "CallerNumber", "callerNumber")  # UNVERIFIED (benerte: callerNumber)
    contact_name: tuple[str, ...] = ("ContactName",)  # UNVERIFIED
    note: tuple[str, ...] = ("Note", "note", "ContactMessage")  # UNVERIFIED (benerte payloads: note)
    due: tuple[str, ...] = ("DueDate", "DueTime")  # UNVERIFIED ("Due in an hour", wiki)
    expires: tuple[str, ...] = ("ExpiryDate", "ExpiresAt")  # UNVERIFIED ("Expires in 24 hours", wiki)
    created: tuple[str, ...] = ("CreationTime", "Created")  # UNVERIFIED
    modified: tuple[str, ...] = ("LastModified", "Modified")  # UNVERIFIED (classification: Modified)
    assigned_user: tuple[str, ...] = ("AssignedUserId", "UserId")  # UNVERIFIED
    attempts: tuple[str, ...] = ("CallbackAttempts", "Attempts")  # UNVERIFIED
    closed: tuple[str, ...] = ("IsClosed", "Closed")  # UNVERIFIED (true when handled or closed)
    resolution: tuple[str, ...] = ("ClosingReason", "Resolution")  # UNVERIFIED
    handled_values: tuple[str, ...] = ("Handled", "Completed", "Success")  # UNVERIFIED, compared lower-cased
    # -- notifications (event names: benerte real-time API; webhook subscription names may differ) --
    created_events: tuple[str, ...] = ("CallbackCreated",)
    changed_events: tuple[str, ...] = ("CallbackUpdated", "CallbackChanged")
    closed_events: tuple[str, ...] = ("CallbackClosed",)
    event_item_id: tuple[str, ...] = ("CallbackListItemId", "CallbackId", "RootEntityId", "EntityId")  # UNVERIFIED

    def is_callback_event(self, event_type: str) -> bool:
        lowered = event_type.strip().lower()
        return lowered in (n.lower() for n in (*self.created_events, *self.changed_events, *self.closed_events))


@dataclass(frozen=True)
class EnreachMapping:
    calls: CallFields = CallFields()
    users: UserFields = UserFields()
    availability: AvailabilityMap = field(default_factory=AvailabilityMap)
    events: EventMap = EventMap()
    callbacks: CallbackFields = CallbackFields()
    service_calls: ServiceCallFields = ServiceCallFields()
    transcripts: TranscriptFields = TranscriptFields()


def first_present(item: Mapping[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    """The first of ``names`` the record carries with a non-empty value: (name, value)."""
    for name in names:
        value = item.get(name)
        if value is not None and value != "":
            return name, value
    return None, None


# -- parsing ENREACH_FIELD_MAP -------------------------------------------------------------


def _names(key: str, value: Any, *, allow_empty: bool = True) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise FieldMapError(key, "give a field name or a list of field names (strings)")
    if not items and not allow_empty:
        raise FieldMapError(key, "give at least one name")
    if any(len(i) > 100 for i in items):
        raise FieldMapError(key, "a field name is longer than 100 characters")
    return tuple(i.strip() for i in items)


def _section(key: str, value: Any, base: Any) -> Any:
    if not isinstance(value, dict):
        raise FieldMapError(key, "must be a JSON object")
    known = {f.name: f for f in fields(base)}
    changes: dict[str, Any] = {}
    for name, given in value.items():
        if name not in known:
            raise FieldMapError(f"{key}.{name}", f"unknown key; known keys: {', '.join(sorted(known))}")
        current = getattr(base, name)
        path = f"{key}.{name}"
        if name == "event_types":
            changes[name] = _event_types(path, given, current)
        elif isinstance(current, tuple):
            required = name in ("call_id", "start", "id", "event_type", "list_id", "event_item_id")
            changes[name] = _names(path, given, allow_empty=not required)
        elif isinstance(current, str):
            if not isinstance(given, str) or not given.strip():
                raise FieldMapError(path, "must be a non-empty string")
            if name in ("item_path", "close_path") and "{id}" not in given:
                raise FieldMapError(path, "must hold {id} where the request's id goes, e.g. callbacks/{id}")
            changes[name] = given.strip()
            if name == "query_mode" and changes[name] not in QUERY_MODES:
                raise FieldMapError(path, f"must be one of {', '.join(QUERY_MODES)} (got {given!r})")
        else:  # pragma: no cover - every field is one of the above
            raise FieldMapError(path, "cannot be overridden")
    return replace(base, **changes)


def _event_types(key: str, given: Any, current: Mapping[str, int | None]) -> dict[str, int | None]:
    if not isinstance(given, dict):
        raise FieldMapError(key, 'must be a JSON object such as {"DND": 3, "Busy": 2}')
    merged = dict(current)
    for name, number in given.items():
        if name not in AVAILABILITY_NAMES or name == "Available":
            raise FieldMapError(
                f"{key}.{name}",
                "unknown availability; use Busy, Away, BRB, DND or OffWork (Available is no availability)",
            )
        if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 0):
            raise FieldMapError(f"{key}.{name}", "must be the EventTypeID (a non-negative integer) or null")
        merged[name] = number
    numbers = [n for n in merged.values() if n is not None]
    if len(numbers) != len(set(numbers)):
        raise FieldMapError(key, "two availabilities share one EventTypeID: the way back would be ambiguous")
    return merged


def parse_field_map(text: str | None) -> EnreachMapping:
    """The mapping: the evidence-based defaults, with ``ENREACH_FIELD_MAP`` (JSON) merged over them."""
    mapping = EnreachMapping()
    if not text or not text.strip():
        return mapping
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FieldMapError("(whole setting)", f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FieldMapError("(whole setting)", 'must be a JSON object, e.g. {"calls": {"duration": "Seconds"}}')
    sections = {f.name for f in fields(mapping)}
    for name, given in value.items():
        if name not in sections:
            raise FieldMapError(name, f"unknown section; sections: {', '.join(sorted(sections))}")
        mapping = replace(mapping, **{name: _section(name, given, getattr(mapping, name))})
    return mapping
