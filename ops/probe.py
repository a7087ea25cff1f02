"""``python -m ops probe-enreach``: read real records from the tenant and say which of the
mapped Enreach names (``enreach._mapping``, ``ENREACH_FIELD_MAP``) they carry.

A wrong name shows up here on day one instead of as a silently empty sync. Nothing is written;
numbers are masked; only field names and counts are printed, never e-mails or other values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from core.masking import mask_phone
from enreach import EnreachCall, EnreachClient, EnreachError, EnreachUser, EventMap, RecordError, first_present

__all__ = ["ProbeResult", "probe_enreach"]

SAMPLE_CALLS = 20


@dataclass
class ProbeResult:
    problems: list[str] = field(default_factory=list)  # each names the setting to fix
    notes: list[str] = field(default_factory=list)
    calls_read: int = 0
    users_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        if self.problems:
            return "probe: PROBLEM: " + " | ".join(self.problems)
        return f"probe: ok: {self.users_read} users and {self.calls_read} calls read through the mapping" + (
            f" ({'; '.join(self.notes)})" if self.notes else ""
        )


def _coverage(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> int:
    return sum(1 for r in records if first_present(r, names)[0] is not None)


def _line(label: str, key: str, names: Sequence[str], records: Sequence[Mapping[str, Any]]) -> str:
    if not names:
        return f"  {label:<18} {key:<30} (not mapped)"
    found = _coverage(records, names)
    seen = sorted({n for r in records for n in names if first_present(r, [n])[0] is not None})
    via = ", ".join(seen) or "-"
    return f"  {label:<18} {key:<30} {found:>4} of {len(records):<4} via {via}  (looked for {', '.join(names)})"


def probe_enreach(
    client: EnreachClient,
    *,
    days: int = 3,
    duration_limit_seconds: int = 0,
    max_users: int = 20,
    now: datetime | None = None,
    out: Callable[[str], None] = print,
) -> ProbeResult:
    result = ProbeResult()
    mapping = client.mapping
    me = client.me()
    out(f"Enreach API at {client.api_url}: authenticated (user id {me.id})")

    # -- users --------------------------------------------------------------------------------
    raw_users = client.raw_users()
    result.users_read = len(raw_users)
    out(f"users: {len(raw_users)} records from GET users")
    names = mapping.users
    for key in ("id", "email", "mobile_number", "work_number"):
        out(_line("user", f"users.{key}", getattr(names, key), raw_users))
    users = client.users()
    directory_note = ""
    if raw_users and not all(first_present(r, names.mobile_number)[0] for r in raw_users):
        entries = client.raw_directory_entries()
        directory_note = f"; the {names.directory_name!r} directory has {len(entries)} entries"
        for key in ("id", "email", "mobile_number"):
            out(_line("directory entry", f"users.{key}", getattr(names, key), entries))
    with_email = sum(1 for u in users if u.email)
    with_mobile = sum(1 for u in users if u.mobile_number)
    out(f"  from the directory: {with_email} with an e-mail, {with_mobile} with a mobile{directory_note}")
    others = [u for u in users if u.id.lower() != me.id.lower()]  # the API user's own login is no evidence
    if others and not any(u.email for u in others):
        result.problems.append(
            f"0 of {len(others)} users carry an e-mail: the user id sync would match nobody; "
            "set ENREACH_FIELD_MAP.users.email"
        )

    # -- availability ------------------------------------------------------------------------
    seen_types: dict[int, int] = {}
    shapes: dict[str, int] = {}
    open_ended = 0
    sampled = [me, *[u for u in users if u.id != me.id]][:max_users]
    for user in sampled:
        current = client.current_availability(user.id)
        if current.name == "Available" or current.type_id is None:
            shapes[current.shape] = shapes.get(current.shape, 0) + 1
        if current.type_id is not None:
            seen_types[current.type_id] = seen_types.get(current.type_id, 0) + 1
        if current.type_id is not None and current.name != "Available" and current.end is None:
            open_ended += 1
    mapped = mapping.availability.event_types
    described = ", ".join(
        f"{type_id} x{count} ({mapping.availability.name_of(type_id) or 'not mapped'})"
        for type_id, count in sorted(seen_types.items())
    )
    out(f"availability of {len(sampled)} users: EventTypeIDs active: {described or 'none (all Available)'}")
    shape_text = ", ".join(f"{_SHAPES.get(k, k)} x{n}" for k, n in sorted(shapes.items()))
    out(
        f"  none active answered as: {shape_text or 'not seen (every sampled user had one active)'}"
        + (f"; {open_ended} active without an end (open-ended)" if open_ended else "")
    )
    if shapes:
        result.notes.append("availability/current with none active answers " + "/".join(sorted(shapes)))
    out(
        "  mapped: "
        + ", ".join(f"{n}={v if v is not None else 'unset'}" for n, v in mapped.items())
        + " (set more in ENREACH_FIELD_MAP.availability.event_types)"
    )
    _notifications(mapping.events, out)

    until = (now or datetime.now(UTC)).replace(microsecond=0)
    _probe_callbacks(client, result, out, until=until, days=days)

    # -- calls -------------------------------------------------------------------------------
    since = until - timedelta(days=days)

    # -- queue calls (GET servicecall; every name UNVERIFIED) -------------------------------------
    queue_records = client.raw_service_calls(since, until, by="start")
    out(f"queue calls: {len(queue_records)} records of the last {days} days from GET servicecall (names UNVERIFIED)")
    service_map = mapping.service_calls
    for key in (f.name for f in fields(service_map)):
        out(_line("queue call", f"service_calls.{key}", getattr(service_map, key), queue_records))
    if queue_records and _coverage(queue_records, service_map.call_id) == 0:
        result.problems.append(
            f"0 of {len(queue_records)} queue calls carry a call id: set ENREACH_FIELD_MAP.service_calls.call_id"
        )
    records: list[tuple[EnreachUser, dict[str, Any]]] = []
    asked = 0
    for user in users[:max_users] or [me]:
        asked += 1
        records += [(user, r) for r in client.raw_calls(since, until, by="start", user_id=user.id)]
        if len(records) >= 200:
            break
    raw = [r for _, r in records]
    result.calls_read = len(raw)
    out(f"calls: {len(raw)} records of the last {days} days, asked for {asked} users (UserIDs=<id>)")
    _query_modes(client, me, records, since, until, result, out)
    calls_map = mapping.calls
    keys = [f.name for f in fields(calls_map) if isinstance(getattr(calls_map, f.name), tuple)]
    for key in keys:
        if key.endswith("_values"):
            continue
        out(_line("call", f"calls.{key}", getattr(calls_map, key), raw))
    if not raw:
        result.notes.append(f"no calls in the last {days} days: call fields unchecked (try --days 14)")
        return _finish(result, out)
    required = {"call_id": calls_map.call_id, "start": calls_map.start, "duration": calls_map.duration}
    for key, candidates in required.items():
        if _coverage(raw, candidates) == 0:
            result.problems.append(f"0 of {len(raw)} calls carry a {key} field: set ENREACH_FIELD_MAP.calls.{key}")
    number_names = calls_map.other_number or (*calls_map.a_number, *calls_map.b_number)
    if _coverage(raw, number_names) == 0:
        result.problems.append(f"0 of {len(raw)} calls carry a number field: set ENREACH_FIELD_MAP.calls.other_number")

    parsed: list[EnreachCall] = []
    out(f"what the call sync would do with the first {min(SAMPLE_CALLS, len(records))} calls:")
    for index, (user, record) in enumerate(records):
        try:
            call = EnreachCall.from_api(record, calls_map, user_id=user.id)
        except RecordError as error:
            if index < SAMPLE_CALLS:
                out(f"  skipped: unreadable ({error.field} missing)")
            continue
        parsed.append(call)
        if index >= SAMPLE_CALLS:
            continue
        if call.classification != "Work":
            decision = f"skipped: {call.classification} (only Work calls sync)"
        elif call.duration_seconds < duration_limit_seconds:
            decision = "skipped: shorter than CALL_DURATION_LIMIT"
        else:
            decision = "kept" + ("" if call.other_number else ", but no number: no customer can be matched")
        out(
            f"  {call.start:%Y-%m-%d %H:%M} {call.direction:<3} {mask_phone(call.other_number):<14} "
            f"{call.duration_seconds:>5}s {'mobile' if call.is_mobile else 'work  '} -> {decision}"
        )
    with_transcript = [c for c in parsed if c.transcript_id]
    if with_transcript:
        transcript = client.transcript(str(with_transcript[0].transcript_id))
        out(
            f"transcripts: {len(with_transcript)} calls name one (calls.transcript_id, UNVERIFIED); the first reads "
            + (f"status {transcript.status!r}" if transcript else "404 (unknown id: check calls.transcript_id)")
        )
    else:
        out("transcripts: no call names one via " + ", ".join(calls_map.transcript_id) + " (UNVERIFIED name)")
    work = sum(1 for c in parsed if c.classification == "Work")
    labelled = _coverage(raw, calls_map.classification)
    if labelled == 0:
        out(
            f"  no call carries {'/'.join(calls_map.classification)}: the default name is probably wrong "
            '(in EnreachAPI "classification" is the call tagging API, /classification/instance with '
            "TagSchemaId and TagSelections, not the Work/Private setting); look for the privacy field in "
            "a record and set ENREACH_FIELD_MAP.calls.classification"
        )
    else:
        values = Counter(str(first_present(r, calls_map.classification)[1]) for r in raw)
        known = {v.lower() for v in (*calls_map.work_values, *calls_map.private_values, *calls_map.unclassified_values)}
        unknown = sorted(v for v in values if v.lower() not in known)
        if unknown:
            out(f"  classification values the mapping does not know (read as unclassified): {len(unknown)}")
    if parsed and work == 0:
        why = (
            f"none carries {'/'.join(calls_map.classification)}, which is probably the tagging API's name "
            "(/classification/instance, TagSchemaId, TagSelections), not the privacy class's"
            if labelled == 0
            else f"{labelled} carry {'/'.join(calls_map.classification)}"
        )
        result.problems.append(
            f"0 of {len(raw)} calls are classified Work ({why}): "
            "the call sync would write nothing; set ENREACH_FIELD_MAP.calls.classification and work_values"
        )
    return _finish(result, out)


def _notifications(events: EventMap, out: Callable[[str], None]) -> None:
    """What the notification endpoint looks for: no API lists notifications, so this is the mapping as
    configured (UNVERIFIED names); the webhook logs the shape of each type it does not act on."""
    out("notifications (UNVERIFIED: no public source shows an Enreach Voice webhook body):")
    for key in ("event_type", "event_id", "timestamp", "user_id", "call_id", "payload"):
        out(f"  events.{key:<22} looked for: {', '.join(getattr(events, key)) or '-'}")
    for key in ("call_start", "call_end", "availability_changed"):
        out(f"  events.{key:<22} mapped: {', '.join(getattr(events, key)) or '(none)'}")
    if not events.call_end:
        out("  no call end mapped: call starts are not acted on (ENREACH_FIELD_MAP.events.call_end)")
    out(
        "  each unmapped type is logged once with its shape (enreach_notification_unmapped); candidates: "
        "UserAvailability, UserCallInComing, QueueCallInUserConnected, QueueCallInDisconnected (README)"
    )


def _probe_callbacks(
    client: EnreachClient, result: ProbeResult, out: Callable[[str], None], *, until: datetime, days: int
) -> None:
    """Callback lists and requests (every path and most fields UNVERIFIED: ``ENREACH_FIELD_MAP.callbacks``)."""
    names = client.mapping.callbacks
    lists = client.raw_callback_lists()
    if lists is None:
        out(f"callback lists: GET {names.lists_path} answered 404")
        result.notes.append(
            f"no callback lists (GET {names.lists_path} answered 404: the tenant has none, or set "
            "ENREACH_FIELD_MAP.callbacks.lists_path; only needed with the callbacks job in BRIDGE_JOBS)"
        )
        return
    out(f"callback lists: {len(lists)} from GET {names.lists_path}")
    for key in ("list_id", "list_name", "list_queue_id"):
        out(_line("callback list", f"callbacks.{key}", getattr(names, key), lists))
    if lists and _coverage(lists, names.list_id) == 0:
        result.problems.append(f"0 of {len(lists)} callback lists carry an id: set ENREACH_FIELD_MAP.callbacks.list_id")
    since = until - timedelta(days=days)
    items = client.raw_callbacks(since, until + timedelta(seconds=1))
    out(f"callback requests: {len(items)} modified in the last {days} days (GET {names.items_path})")
    if not items:
        result.notes.append(f"{len(lists)} callback lists, no request in the last {days} days: fields unchecked")
        return
    keys = [f.name for f in fields(names) if isinstance(getattr(names, f.name), tuple)]
    skipped = ("list_id", "list_name", "list_queue_id", "handled_values", "event_item_id")
    for key in keys:
        if key in skipped or key.endswith("_events"):
            continue
        out(_line("callback request", f"callbacks.{key}", getattr(names, key), items))
    for key in ("id", "number"):
        if _coverage(items, getattr(names, key)) == 0:
            result.problems.append(
                f"0 of {len(items)} callback requests carry a {key} field: set ENREACH_FIELD_MAP.callbacks.{key}"
            )
    result.notes.append(f"{len(lists)} callback lists, {len(items)} recent callback requests")


_SHAPES = {
    "204": "204 No Content",
    "404": "404",
    "null": "JSON null",
    "{}": "an empty object",
    "[]": "an empty list",
    "record": "a record (Available or ended)",
    "list": "a list",
}


def _query_modes(
    client: EnreachClient,
    me: EnreachUser,
    records: Sequence[tuple[EnreachUser, Mapping[str, Any]]],
    since: datetime,
    until: datetime,
    result: ProbeResult,
    out: Callable[[str], None],
) -> None:
    """Which call query mode the tenant answers: ``GET calls`` without ``UserIDs`` (mode "all")
    compared with the per-user answers just read."""
    names = client.mapping.calls
    try:
        everyone = client.raw_calls(since, until, by="start")
    except EnreachError as error:
        verdict = f"per_user only (GET calls without UserIDs refused: HTTP {error.status})"
        everyone = None
    if everyone is not None:
        ids = {str(first_present(r, names.call_id)[1]) for r in everyone}
        others = [
            r for user, r in records if user.id.lower() != me.id.lower() and str(first_present(r, names.call_id)[1])
        ]
        found = sum(1 for r in others if str(first_present(r, names.call_id)[1]) in ids)
        if not others:
            verdict = f"undecided (no call of another user in the window; without UserIDs: {len(everyone)} records)"
        elif found == len(others):
            verdict = f"all (without UserIDs: {len(everyone)} records, every other user's call among them)"
        else:
            verdict = f"per_user only (without UserIDs: {found} of {len(others)} other users' calls)"
    out(f"  query mode: the tenant answers {verdict}; mapped: calls.query_mode = {names.query_mode}")
    result.notes.append(f"query mode: {verdict.split(' (')[0]}")
    if names.query_mode == "all" and not verdict.startswith(("all", "undecided")):
        result.problems.append(
            "calls.query_mode is all, but the tenant does not answer every user's calls without UserIDs: "
            'set ENREACH_FIELD_MAP.calls.query_mode to "per_user"'
        )


def _finish(result: ProbeResult, out: Callable[[str], None]) -> ProbeResult:
    out(result.verdict())
    return result
