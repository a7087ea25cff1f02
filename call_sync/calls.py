"""``sync_phone_calls``: Enreach Work calls become Dataverse phone call activities, exactly once.

Per run: read Enreach call events modified since the checkpoint (minus an overlap, for
late records) plus the calls parked by earlier runs, keep Work calls of at least
``CALL_DURATION_LIMIT`` seconds, and map each to its Dataverse owner (Enreach user id; users
not mapped yet are matched on the spot by e-mail, as the user id sync does, in one query; for
mobile calls the user's mobile number; else ``DEFAULT_CRM_ASSIGNEE``; else the call is parked
in Table Storage and retried by later runs for ``CALL_SYNC_PARK_DAYS``). The customers of all
calls are found in one query per ``CALL_SYNC_BATCH_SIZE`` numbers (the routing package's
matching). Then, per page of calls, one query finds what Dataverse already holds (calls synced
before, agent-made phonecalls to adopt) and one ``$batch`` writes the page, one atomic change
set per call: create the phonecall (the Enreach call id in an alternate-key column) and
complete it, or adopt the agent's phonecall (key, end, duration, state; its subject and
description kept), or remove a call reclassified Private. A create that meets the key fails
with 412 and counts as already synced, so crashes, retries, replayed timers and overlapping
runs never duplicate a call. A page that stays throttled is reported and left for the next
run; the checkpoint (Table Storage) never moves past a call that was not settled.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from core import metrics
from core.masking import mask_phone
from core.schema import CALL_SYNC, CUSTOMER_TABLES, FOLLOW_UPS
from core.state import CheckpointConflict, CheckpointStore, RunRecord
from dataverse import (
    BatchRequest,
    BatchResponse,
    ChangeSet,
    DataverseClient,
    DataverseError,
    ServiceUnavailable,
    key_path,
)
from dataverse import Throttled as DataverseThrottled
from dataverse import filters as f
from enreach import EnreachAuthError, EnreachCall, EnreachClient, EnreachError, EnreachUser
from matching import CallerLookup, Candidate, to_e164

from .adoption import Planned, match_adoptions, read_page_state
from .customers import NOBODY, CustomerChoice, Regarding, choose_customer, regarding_for
from .followups import FollowUpPlan, is_missed, plan_number
from .parking import ParkedCall, ParkedCalls
from .query import close_sweep, read_calls
from .transcripts import PendingTranscripts, TranscriptReport, fetch, note_request, settle_pending
from .users import resolve_users

__all__ = [
    "CHECKPOINT_NAME",
    "CallSyncOptions",
    "CallSyncReport",
    "SyncResult",
    "UserDirectory",
    "call_key",
    "settle_parking",
    "sync_calls",
    "sync_phone_calls",
    "write_page",
]

log = logging.getLogger("call_sync")
CHECKPOINT_NAME = "phone_calls"
PRIVATE_SUBJECT = "Private call"
DESCRIPTION_LENGTH = 2000
_ENTITY_SET = {t.logical_name: t.entity_set for t in CUSTOMER_TABLES}
_DUPLICATE_CODES = {"0x80060892", "0x80040237"}
# Calls per page query (their keys and the adoption candidates): 500 keys of two GUIDs each stay
# well under the 64 KB a GET may have inside a $batch (32 KB outside one).
QUERY_PAGE = 500


@dataclass(frozen=True)
class CallSyncOptions:
    region: str
    duration_limit_seconds: int = 0
    default_assignee: str | None = None
    overlap: timedelta = timedelta(minutes=15)
    batch_size: int = 100
    dry_run: bool = False
    start_margin: timedelta = timedelta(seconds=120)
    park_for: timedelta = timedelta(days=7)
    initial_lookback: timedelta = timedelta(hours=24)
    private_calls: str = "delete"  # or "anonymise"
    recording_link: str | None = None  # None (off), "id", or a URL template with {recording_id}
    # how long one write step may wait out Dataverse's 429s before its calls are reported as
    # throttled and left for the next run (the timer runs every few minutes)
    throttle_wait_seconds: float = 60.0
    # issue 23: missed calls and follow-ups, unknown callers, regarding, transcripts (call_sync/config.py)
    follow_ups: bool = True
    follow_up_due: timedelta = timedelta(hours=24)
    queue_calls: bool = True
    queue_map: Mapping[str, str] = field(default_factory=dict)  # Enreach queue id (lower) -> Dataverse queue id
    unknown_caller_leads: bool = False
    blocked_numbers: frozenset[str] = frozenset()  # E.164
    regarding_case: bool = True
    regarding_opportunity: bool = False
    transcripts: bool = False
    transcript_wait: timedelta = timedelta(hours=24)
    # Enreach requests per run (CALL_SYNC_ENREACH_REQUEST_BUDGET; 0 = no limit), see call_sync/query.py
    enreach_request_budget: int = 0


@dataclass
class CallSyncReport:
    read: int = 0
    created: int = 0
    already_synced: int = 0
    failed: int = 0
    throttled: int = 0
    adopted: int = 0
    for_review: int = 0
    private_removed: int = 0
    users_mapped: int = 0
    parked: int = 0  # newly parked by this run
    waiting: int = 0  # parked and still waiting after this run
    unparked: int = 0  # parked earlier, synced by this run
    expired: int = 0  # parked past CALL_SYNC_PARK_DAYS by this run
    parked_oldest_age_s: int = 0  # age of the oldest call still waiting (the parked-calls alert reads it)
    missed: int = 0  # missed calls written (user and queue calls)
    follow_ups_opened: int = 0
    follow_ups_added: int = 0  # misses added to an open follow-up
    follow_ups_completed: int = 0
    unknown_callers: int = 0  # calls written with a number that matched nobody
    leads_created: int = 0
    regarding_case: int = 0
    regarding_opportunity: int = 0
    transcripts_attached: int = 0
    transcripts_pending: int = 0  # waiting after this run
    transcripts_given_up: int = 0
    oldest_parked: str | None = None  # when the longest-waiting parked call was parked (run status row)
    enreach_requests: int = 0  # sent by this run (CALL_SYNC_ENREACH_REQUEST_BUDGET)
    users_left: int = 0  # users whose calls the next run reads for this window (budget spent)
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    window: tuple[str, str] | None = None
    checkpoint: str | None = None

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    @property
    def outcome(self) -> str:
        return "ok" if not (self.failed or self.throttled or self.problems) else "partial"

    def counts(self) -> dict[str, int]:
        names = (
            "read created already_synced failed throttled adopted for_review private_removed "
            "users_mapped parked waiting unparked expired parked_oldest_age_s enreach_requests users_left missed "
            "follow_ups_opened follow_ups_added follow_ups_completed unknown_callers leads_created regarding_case "
            "regarding_opportunity transcripts_attached transcripts_pending transcripts_given_up"
        )
        return {name: int(getattr(self, name)) for name in names.split()}

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items())) or "none"
        text = (
            f"phone calls: {self.read} read, {self.created} created, {self.already_synced} already synced, "
            f"{self.failed} failed, {self.throttled} throttled (retried next run); {self.adopted} adopted, "
            f"{self.for_review} for review, {self.private_removed} private removed, "
            f"{self.users_mapped} users mapped on the spot; parked: {self.parked} new, {self.unparked} synced, "
            f"{self.waiting} waiting, {self.expired} expired; missed: {self.missed}, follow-ups "
            f"{self.follow_ups_opened} opened, {self.follow_ups_added} added to, "
            f"{self.follow_ups_completed} completed; "
            f"{self.unknown_callers} unknown callers, {self.leads_created} leads; regarding "
            f"{self.regarding_case} cases, {self.regarding_opportunity} opportunities; transcripts "
            f"{self.transcripts_attached} attached, {self.transcripts_pending} pending, "
            f"{self.transcripts_given_up} given up; skipped: {skipped}"
        )
        text += f"; Enreach: {self.enreach_requests} requests" + (
            f", {self.users_left} users left for the next run" if self.users_left else ""
        )
        if self.problems:
            text += "; problems: " + " | ".join(self.problems[:5])
        return text + f"; checkpoint {self.checkpoint or 'none'}"


@dataclass
class SyncResult:
    """What ``sync_calls`` leaves to its caller."""

    retry: list[EnreachCall] = field(default_factory=list)  # failed or throttled: keep behind the checkpoint
    unmapped: list[EnreachCall] = field(default_factory=list)  # no owner: park
    settled: set[str] = field(default_factory=set)  # keys needing nothing more (synced, or never to sync)


@dataclass(frozen=True)
class UserDirectory:
    """Dataverse users by Enreach user id and by E.164 mobile number."""

    by_enreach_id: Mapping[str, str]
    by_mobile: Mapping[str, str]

    @classmethod
    def load(cls, client: DataverseClient, region: str) -> UserDirectory:
        by_id: dict[str, str] = {}
        by_mobile: dict[str, str] = {}
        for user in client.query(
            "systemusers",
            select=["systemuserid", CALL_SYNC.user_id_column, "mobilephone"],
            filter=f.eq("isdisabled", False),
        ):
            if user.get(CALL_SYNC.user_id_column):
                by_id[str(user[CALL_SYNC.user_id_column]).lower()] = user["systemuserid"]
            mobile = to_e164(user.get("mobilephone"), region)
            if mobile:
                by_mobile[mobile] = user["systemuserid"]
        return cls(by_id, by_mobile)


def call_key(call: EnreachCall) -> str:
    """The phonecall's alternate-key value: the Enreach call id, per user where one call has several
    (``<id>:queue`` for a missed queue call read from ``GET servicecall``)."""
    if call.queue_call:
        return f"{call.call_id}:queue"
    return f"{call.call_id}:{call.user_id}" if call.user_id else call.call_id


def _owner(
    call: EnreachCall, users: UserDirectory, enreach_users: Mapping[str, EnreachUser], region: str
) -> str | None:
    if call.is_mobile:
        # Mobile calls sync only for users whose mobile number is on their Dynamics user record.
        enreach_user = enreach_users.get((call.user_id or "").lower())
        mobile = to_e164(enreach_user.mobile_number, region) if enreach_user else None
        return users.by_mobile.get(mobile) if mobile else None
    return users.by_enreach_id.get((call.user_id or "").lower())


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def recording_lines(call: EnreachCall, link: str | None) -> list[str]:
    """What an agent follows to the call's recordings (never the audio itself)."""
    if not link or not call.recording_ids:
        return []
    if link == "id":
        return [f"Enreach recording {r}" for r in call.recording_ids]
    return [
        "Recording: " + link.replace("{recording_id}", quote(r, safe="")).replace("{call_id}", quote(call.call_id))
        for r in call.recording_ids
    ]


def _party(table: str, entity_set: str, record_id: str, mask: int) -> dict[str, Any]:
    return {f"partyid_{table}@odata.bind": f"/{entity_set}({record_id})", "participationtypemask": mask}


def phonecall_body(
    call: EnreachCall,
    owner: str,
    number: str | None,
    customer: CustomerChoice | Candidate | None,
    *,
    recording_link: str | None = None,
    regarding: Regarding | None = None,
    missed: bool = False,
    lines: Sequence[str] = (),
) -> dict[str, Any]:
    """The phonecall of ``call``. ``owner`` "" leaves the owner to Dataverse (the application user:
    a queue call with no owner). ``regarding`` (``customers.regarding_for``) overrides the customer as
    the regarding record and says why; ``missed`` marks a missed call; ``lines`` go in the description."""
    choice = customer if isinstance(customer, CustomerChoice) else NOBODY
    if isinstance(customer, Candidate):
        choice = CustomerChoice(customer, (customer,))
    outgoing = call.direction == "out"
    person = choice.regarding
    who = (person.name if person and person.name else None) or (mask_phone(number) if number else "unknown")
    if regarding is not None and regarding.table == "lead" and person is None:
        who = "unknown caller " + (mask_phone(number) if number else "")
    description = "\n".join(
        [
            f"Enreach call {call.call_id}" + (" (queue call)" if call.queue_call else ""),
            *([regarding.reason] if regarding is not None and regarding.reason else []),
            *lines,
            *recording_lines(call, recording_link),
        ]
    )
    if missed:
        subject = f"Missed call from {who}"
    else:
        subject = f"{'Outgoing call to' if outgoing else 'Incoming call from'} {who}"
    body: dict[str, Any] = {
        "subject": subject[:200],
        "phonenumber": (number or call.other_number or "")[:200] or None,
        "directioncode": outgoing,
        "actualstart": _iso(call.start),
        "actualend": _iso(call.end or call.start + timedelta(seconds=call.duration_seconds)),
        "actualdurationminutes": max(1, math.ceil(call.duration_seconds / 60)),
        "description": description[:DESCRIPTION_LENGTH],
        CALL_SYNC.call_id_column: call_key(call),
    }
    parties = []
    if owner:
        body["ownerid@odata.bind"] = f"/systemusers({owner})"
        parties.append(_party("systemuser", "systemusers", owner, 1 if outgoing else 2))
    if missed:
        body[FOLLOW_UPS.result_column] = FOLLOW_UPS.missed_value
    if regarding is not None:
        body[f"regardingobjectid_{regarding.table}_phonecall@odata.bind"] = regarding.bind
        if regarding.key and person is None:  # a lead created for the number: also the caller
            parties.append({"partyid_lead@odata.bind": regarding.bind, "participationtypemask": 2 if outgoing else 1})
    elif person is not None:
        entity_set = _ENTITY_SET[person.table]
        body[f"regardingobjectid_{person.table}_phonecall@odata.bind"] = f"/{entity_set}({person.id})"
    for record in choice.parties:
        parties.append(_party(record.table, _ENTITY_SET[record.table], record.id, 2 if outgoing else 1))
    if not choice.parties and number:
        body[FOLLOW_UPS.unknown_column] = number  # "Calls from unknown numbers"
    if choice.review:
        body[CALL_SYNC.review_column] = choice.review
    body["phonecall_activity_parties"] = parties
    return body


def _status(call: EnreachCall) -> int:
    return 2 if call.direction == "out" else 4  # Made / Received


def _changeset(call: EnreachCall, body: dict[str, Any], slot: int = 0) -> ChangeSet:
    # A phone call cannot be created closed: create, then complete it (Made 2 / Received 4), atomically.
    # ``slot``: the call's place in a change set holding several calls (unique Content-IDs).
    first = str(10 * slot + 1)
    return ChangeSet(
        [
            BatchRequest("POST", "phonecalls", body, content_id=first),
            BatchRequest("PATCH", f"${first}", {"statecode": 1, "statuscode": _status(call)}),
        ]
    )


def _adoption(call: EnreachCall, row: Mapping[str, Any], recording_link: str | None) -> ChangeSet:
    """Make the agent's phonecall this call's record: key, times, direction and state; its subject,
    description (a recording line is appended), parties and regarding stay as the agent left them."""
    path = f"phonecalls({row['activityid']})"
    match = {"If-Match": "*"}  # update only, never create
    changes: dict[str, Any] = {
        CALL_SYNC.call_id_column: call_key(call),
        "directioncode": call.direction == "out",
        "actualend": _iso(call.end or call.start + timedelta(seconds=call.duration_seconds)),
        "actualdurationminutes": max(1, math.ceil(call.duration_seconds / 60)),
    }
    if not row.get("actualstart"):
        changes["actualstart"] = _iso(call.start)
    lines = [line for line in recording_lines(call, recording_link) if line not in str(row.get("description") or "")]
    if lines:
        changes["description"] = "\n".join([str(row.get("description") or ""), *lines]).strip()[:DESCRIPTION_LENGTH]
    requests = []
    if row.get("statecode") == 1:  # completed by the agent: reopen, update, complete again
        requests.append(BatchRequest("PATCH", path, {"statecode": 0, "statuscode": 1}, headers=dict(match)))
    requests.append(BatchRequest("PATCH", path, changes, headers=dict(match)))
    requests.append(BatchRequest("PATCH", path, {"statecode": 1, "statuscode": _status(call)}, headers=dict(match)))
    return ChangeSet(requests)


def _private_change(call: EnreachCall, row: Mapping[str, Any], action: str) -> ChangeSet | None:
    """Remove a synced call that became Private; or replace it by an anonymous record (same key:
    owner, direction and times only). None when it is anonymous already."""
    path = f"phonecalls({row['activityid']})"
    if action != "anonymise":
        return ChangeSet([BatchRequest("DELETE", path)])
    if row.get("subject") == PRIVATE_SUBJECT:
        return None
    owner = str(row.get("_ownerid_value") or "")
    outgoing = call.direction == "out"
    body = {
        "subject": PRIVATE_SUBJECT,
        "directioncode": outgoing,
        "actualstart": _iso(call.start),
        "actualend": _iso(call.end or call.start + timedelta(seconds=call.duration_seconds)),
        "actualdurationminutes": max(1, math.ceil(call.duration_seconds / 60)),
        CALL_SYNC.call_id_column: call_key(call),
        "ownerid@odata.bind": f"/systemusers({owner})",
        "phonecall_activity_parties": [_party("systemuser", "systemusers", owner, 1 if outgoing else 2)],
    }
    return ChangeSet(
        [
            BatchRequest("DELETE", path, content_id="1"),
            BatchRequest("POST", "phonecalls", body, content_id="2"),
            BatchRequest("PATCH", "$2", {"statecode": 1, "statuscode": _status(call)}, content_id="3"),
        ]
    )


def write_page(
    client: DataverseClient, items: Sequence[ChangeSet], *, batch_size: int, throttle_wait_seconds: float = 60.0
) -> list[BatchResponse | None]:
    """The one write step of the call sync: change sets in ``$batch`` requests of ``batch_size``, sent in
    parallel at Dataverse's recommended degree; one outcome per change set, in order. Dataverse's
    429s are waited out for ``throttle_wait_seconds`` at most, then the step fails as throttled."""
    return client.batch_each_parallel(
        items, max_batch=batch_size, idempotent=True, max_throttle_wait=throttle_wait_seconds
    )


def _transient(error: Exception) -> bool:
    return isinstance(error, (DataverseThrottled, ServiceUnavailable))


def _note_failure(report: CallSyncReport, what: str, error: Exception, count: int) -> None:
    kind = "throttled" if _transient(error) else "failed"
    if kind == "throttled":
        report.throttled += count
    else:
        report.failed += count
    line = f"{what}: {kind} for {count} calls ({error.__class__.__name__}: {str(error)[:160]})"
    report.problems.append(line)
    log.warning("%s", line)


@dataclass
class _Work:
    key: str
    call: EnreachCall
    owner: str | None  # None for a Private call (only removed, if it was synced); "" for the app user
    number: str | None


def sync_calls(
    calls: Iterable[EnreachCall],
    *,
    client: DataverseClient,
    lookup: CallerLookup,
    users: UserDirectory,
    enreach_users: Mapping[str, EnreachUser],
    options: CallSyncOptions,
    report: CallSyncReport,
    on_progress: Callable[[int], None] | None = None,
    enreach: EnreachClient | None = None,
    pending: PendingTranscripts | None = None,
    now: datetime | None = None,
) -> SyncResult:
    """Write the calls that should be synced; return what is left: calls to retry, calls to park.
    ``enreach`` reads transcripts (``options.transcripts``); ``pending`` keeps those not Completed yet."""
    result = SyncResult()
    extras = _Extras(enreach if options.transcripts else None, pending, now or datetime.now(UTC))
    work: list[_Work] = []
    seen: set[str] = set()
    candidates: list[EnreachCall] = []
    for call in calls:
        report.read += 1
        key = call_key(call)
        if key.lower() in seen:
            report.skip("repeated event")
            continue
        seen.add(key.lower())
        kind = call.classification.lower()
        if kind == "private":
            work.append(_Work(key, call, None, None))  # removed below if an earlier run synced it
            continue
        if kind != "work":
            report.skip(f"{kind} call")
            result.settled.add(key)
            continue
        missed = options.follow_ups and is_missed(call)
        if call.queue_call and not missed:
            report.skip("answered queue call (synced from the answering user's records)")
            result.settled.add(key)
            continue
        if call.queue_call:
            # no user's call: the customer's owner (found below), else DEFAULT_CRM_ASSIGNEE, else the app
            work.append(_Work(key, call, options.default_assignee or "", to_e164(call.other_number, options.region)))
            continue
        if not missed and call.duration_seconds < options.duration_limit_seconds:
            report.skip("shorter than CALL_DURATION_LIMIT")
            result.settled.add(key)
            continue
        candidates.append(call)

    # Owners; Enreach users not mapped yet are matched by e-mail now, in one query for all of them.
    unknown = {
        c.user_id.lower()
        for c in candidates
        if not c.is_mobile and c.user_id and c.user_id.lower() not in users.by_enreach_id
    }
    resolved: dict[str, str] = {}
    if unknown and enreach_users:
        try:
            resolved = resolve_users(unknown, list(enreach_users.values()), client, write=not options.dry_run)
            report.users_mapped += len(resolved)
        except DataverseError as error:
            line = f"user matching: {error.__class__.__name__} (their calls are parked and retried)"
            report.problems.append(line)
            log.warning("%s: %s", line, error)
    for call in candidates:
        owner = _owner(call, users, enreach_users, options.region)
        if owner is None and not call.is_mobile and call.user_id:
            owner = resolved.get(call.user_id.lower())
        owner = owner or options.default_assignee
        if owner is None:
            if call.is_mobile:
                report.skip("unmapped mobile user")
                result.settled.add(call_key(call))
            elif not call.user_id:
                report.skip("no Enreach user")
                result.settled.add(call_key(call))
            else:
                result.unmapped.append(call)
            continue
        work.append(_Work(call_key(call), call, owner, to_e164(call.other_number, options.region)))

    # Customers of every call: one query per batch-size of distinct numbers.
    numbers = list(dict.fromkeys(w.number for w in work if w.number))
    customers: dict[str, tuple[Candidate, ...]] = {}
    unavailable: dict[str, Exception] = {}
    for start in range(0, len(numbers), options.batch_size):
        chunk = numbers[start : start + options.batch_size]
        try:
            customers.update(lookup.find_many(chunk, chunk=options.batch_size))
        except DataverseError as error:
            unavailable.update(dict.fromkeys(chunk, error))

    group = max(options.batch_size, QUERY_PAGE)
    for start in range(0, len(work), group):
        _sync_page(
            work[start : start + group],
            customers,
            unavailable,
            client=client,
            options=options,
            report=report,
            result=result,
            on_progress=on_progress,
            extras=extras,
        )
    return result


@dataclass
class _Extras:
    enreach: EnreachClient | None  # transcripts are read (CALL_SYNC_TRANSCRIPTS on)
    pending: PendingTranscripts | None
    now: datetime


@dataclass
class _Write:
    """One change set of the page and what it settles: one call, or a number's calls with their follow-up."""

    calls: list[tuple[_Work, str]]  # (work, kind): created, review, adopted, private
    change: ChangeSet
    first_id: str | None = None  # Content-ID of the phonecall create of a one-call change set
    plan: FollowUpPlan | None = None
    facts: dict[str, set[str]] = field(default_factory=dict)  # counter name -> call keys


MAX_CALLS_PER_NUMBER = 50  # calls of one number in one change set (the rest: next run)


def _sync_page(
    page: Sequence[_Work],
    customers: Mapping[str, tuple[Candidate, ...]],
    unavailable: Mapping[str, Exception],
    *,
    client: DataverseClient,
    options: CallSyncOptions,
    report: CallSyncReport,
    result: SyncResult,
    on_progress: Callable[[int], None] | None,
    extras: _Extras | None = None,
) -> None:
    """One page query for up to ``QUERY_PAGE`` calls, then their writes, ``batch_size`` calls per ``$batch``."""
    extras = extras or _Extras(None, None, datetime.now(UTC))
    blocked = [w for w in page if w.number in unavailable]
    if blocked:
        _note_failure(report, "customer lookup", unavailable[str(blocked[0].number)], len(blocked))
        result.retry += [w.call for w in blocked]
    page = [w for w in page if w.number not in unavailable]
    if not page:
        return
    to_create = [Planned(w.key, w.call, w.owner, w.number) for w in page if w.owner]
    numbers = sorted({w.number for w in page if w.owner is not None and w.number}) if options.follow_ups else []
    try:
        state = read_page_state(client, [w.key for w in page], to_create, options.start_margin, follow_ups=numbers)
    except (DataverseError, RuntimeError) as error:
        _note_failure(report, "page query", error, len(page))
        result.retry += [w.call for w in page]
        return
    fresh = [p for p in to_create if p.key.lower() not in state.existing]
    adoptions = match_adoptions(fresh, state.candidates, options.start_margin, options.region)
    writes: list[_Write] = []
    todo: list[tuple[_Work, str, CustomerChoice]] = []
    private: list[str] = []
    for item in page:
        existing = state.existing.get(item.key.lower())
        if item.owner is None:  # Private
            report.skip("private call")
            private.append(item.key)
            change = _private_change(item.call, existing, options.private_calls) if existing else None
            if change is None:
                result.settled.add(item.key)
            else:
                writes.append(_Write([(item, "private")], change))
            continue
        if existing is not None:
            report.already_synced += 1
            result.settled.add(item.key)
            continue
        choice = choose_customer(customers.get(item.number or "", ()), item.owner or "")
        if item.call.queue_call and choice.regarding is not None and isinstance(choice.regarding.owner, Mapping):
            item.owner = str(choice.regarding.owner.get("systemuserid") or item.owner)  # the customer's owner
        kind = "adopted" if item.key in adoptions else ("review" if choice.review else "created")
        todo.append((item, kind, choice))
    if private and extras.pending is not None and not options.dry_run:
        extras.pending.forget(private)  # a Private call never gets its transcript
    leads = _ensure_leads(client, todo, options, report)
    transcripts = _transcripts(todo, extras, options, result, report)
    todo = [t for t in todo if t[0].key not in transcripts.get("$retry", {})]

    # one change set per call, or per number when its follow-up changes
    by_number: dict[str, list[tuple[_Work, str, CustomerChoice]]] = {}
    singles: list[tuple[_Work, str, CustomerChoice]] = []
    # every call of a number that has a miss on this page or an open follow-up: an answered one completes it
    follow_numbers = {w.number for w, _, _ in todo if w.number and is_missed(w.call)} | set(state.follow_ups)
    for entry in todo:
        number = entry[0].number
        if options.follow_ups and number and number in follow_numbers:
            by_number.setdefault(number, []).append(entry)
        else:
            singles.append(entry)
    for entry in singles:
        writes.append(_call_write([entry], None, adoptions, leads, transcripts, options, state.follow_ups))
    for number, entries in by_number.items():
        entries.sort(key=lambda e: (e[0].call.start, e[0].key))
        if len(entries) > MAX_CALLS_PER_NUMBER:
            result.retry += [e[0].call for e in entries[MAX_CALLS_PER_NUMBER:]]
            entries = entries[:MAX_CALLS_PER_NUMBER]
        writes.append(_call_write(entries, number, adoptions, leads, transcripts, options, state.follow_ups))
    # as many batches at once as Dataverse recommends (x-ms-dop-hint, capped by
    # DATAVERSE_MAX_PARALLEL_BATCHES): one group of them per write step
    group = options.batch_size * client.parallelism()
    for start in range(0, len(writes), group):
        part = writes[start : start + group]
        _write(part, adoptions, client=client, options=options, report=report, result=result)
        if on_progress:
            on_progress(sum(len(w.calls) for w in part))


def _ensure_leads(
    client: DataverseClient,
    todo: Sequence[tuple[_Work, str, CustomerChoice]],
    options: CallSyncOptions,
    report: CallSyncReport,
) -> dict[str, Regarding]:
    """With ``CALL_SYNC_UNKNOWN_CALLER_LEADS``: one lead per unknown number (not blocked), created
    "only if absent" by its alternate key (412 = made by an earlier or racing run). One ``$batch``."""
    if not options.unknown_caller_leads:
        return {}
    numbers = sorted(
        {
            w.number
            for w, kind, choice in todo
            if w.number and not choice.parties and kind != "adopted" and w.number not in options.blocked_numbers
        }
    )
    if not numbers:
        return {}
    changes = [
        ChangeSet(
            [
                BatchRequest(
                    "PATCH",
                    key_path("leads", {FOLLOW_UPS.lead_number_column: number}),
                    {
                        "subject": f"Caller {mask_phone(number)} (Enreach)",
                        "lastname": f"Unknown caller {number}"[:50],
                        "telephone1": number,
                    },
                    headers={"If-None-Match": "*"},
                )
            ]
        )
        for number in numbers
    ]
    leads: dict[str, Regarding] = {}
    if options.dry_run:
        return leads
    try:
        answers = client.batch_each_parallel(changes, max_batch=options.batch_size, idempotent=True)
    except DataverseError as error:
        report.problems.append(f"leads for unknown callers: {error.__class__.__name__} (tried again next call)")
        return leads
    for number, answer in zip(numbers, answers, strict=True):
        if answer is None or not (answer.ok or answer.status == 412):
            continue
        report.leads_created += 1 if answer.ok else 0
        leads[number] = Regarding(
            "lead",
            "leads",
            None,
            "Regarding the lead made for this unknown number (CALL_SYNC_UNKNOWN_CALLER_LEADS).",
            key=key_path("leads", {FOLLOW_UPS.lead_number_column: number}),
        )
    return leads


def _transcripts(
    todo: Sequence[tuple[_Work, str, CustomerChoice]],
    extras: _Extras,
    options: CallSyncOptions,
    result: SyncResult,
    report: CallSyncReport,
) -> dict[str, Any]:
    """Completed transcripts of the page's calls by call key; the others are remembered (before the
    write) so later runs ask again. ``"$retry"``: calls to write next run (remembering failed)."""
    if extras.enreach is None:
        return {}
    from azure.core.exceptions import AzureError

    wanted = [(w.key, w.call) for w, _, _ in todo if w.call.transcript_id]
    found: dict[str, Any] = {
        key: t for key, t in fetch(extras.enreach, wanted).items() if t is not None and t.completed
    }
    retry: set[str] = set()
    for key, call in wanted:
        if key in found or options.dry_run:
            continue
        if extras.pending is None:
            log.warning("transcript of call %s is not ready and no store keeps it: not attached", call.call_id)
            continue
        try:
            extras.pending.remember(key, str(call.transcript_id), extras.now)
        except AzureError as error:
            log.warning(
                "call %s kept for the next run: its pending transcript was not stored (%s)", call.call_id, error
            )
            retry.add(key)
            result.retry.append(call)
            report.failed += 1
    found["$retry"] = retry
    return found


def _call_write(
    entries: Sequence[tuple[_Work, str, CustomerChoice]],
    number: str | None,
    adoptions: Mapping[str, Mapping[str, Any]],
    leads: Mapping[str, Regarding],
    transcripts: Mapping[str, Any],
    options: CallSyncOptions,
    follow_ups: Mapping[str, Mapping[str, Any]],
) -> _Write:
    """The change set of one call, or of one number's calls (oldest first) and its follow-up."""
    requests: list[BatchRequest] = []
    facts: dict[str, set[str]] = {}
    plan: FollowUpPlan | None = None
    first_choice = entries[-1][2]
    person = first_choice.regarding
    regarding = regarding_for(first_choice, case=options.regarding_case, opportunity=options.regarding_opportunity)
    if regarding is None and number and number in leads and not first_choice.parties:
        regarding = leads[number]
    if number is not None:
        who = (person.name if person and person.name else None) or mask_phone(number)
        owner_user = person.owner.get("systemuserid") if person and isinstance(person.owner, Mapping) else None
        plan = plan_number(
            number,
            [(w.key, w.call, w.owner or None) for w, _, _ in entries],
            follow_ups.get(number),
            who=who,
            follow_up_owner=str(owner_user) if owner_user else None,
            regarding_bind=(regarding.table, regarding.bind) if regarding is not None else None,
            queue_for=options.queue_map,
            due=options.follow_up_due,
        )
    for slot, (item, kind, choice) in enumerate(entries):
        missed = options.follow_ups and is_missed(item.call)
        lines = [plan.completes[item.key]] if plan is not None and item.key in plan.completes else []
        call_regarding = regarding_for(choice, case=options.regarding_case, opportunity=options.regarding_opportunity)
        if call_regarding is None and item.number and item.number in leads and not choice.parties:
            call_regarding = leads[item.number]
        if kind == "adopted":
            change = _adoption(item.call, adoptions[item.key], options.recording_link)
            bind = f"/phonecalls({adoptions[item.key]['activityid']})"
        else:
            body = phonecall_body(
                item.call,
                item.owner or "",
                item.number,
                choice,
                recording_link=options.recording_link,
                regarding=call_regarding,
                missed=missed,
                lines=lines,
            )
            change = _changeset(item.call, body, slot)
            bind = f"${10 * slot + 1}"
            if not choice.parties and item.number:
                facts.setdefault("unknown_callers", set()).add(item.key)
            if call_regarding is not None and call_regarding.table in ("incident", "opportunity"):
                facts.setdefault(
                    f"regarding_{'case' if call_regarding.table == 'incident' else 'opportunity'}", set()
                ).add(item.key)
        if missed:
            facts.setdefault("missed", set()).add(item.key)
        requests += change.requests
        transcript = transcripts.get(item.key)
        if transcript is not None and item.key not in transcripts.get("$retry", ()):
            note = note_request(item.key, transcript, bind)
            note.content_id = str(10 * slot + 2)
            requests.append(note)
            facts.setdefault("transcripts_attached", set()).add(item.key)
    if plan is not None:
        requests += plan.requests
    first_id = requests[0].content_id if len(entries) == 1 else None
    return _Write([(w, k) for w, k, _ in entries], ChangeSet(requests), first_id, plan, facts)


def _write(
    writes: Sequence[_Write],
    adoptions: Mapping[str, Mapping[str, Any]],
    *,
    client: DataverseClient,
    options: CallSyncOptions,
    report: CallSyncReport,
    result: SyncResult,
) -> None:
    if options.dry_run:
        for write in writes:
            for _, kind in write.calls:
                _count(report, kind)
        return
    try:
        answers = write_page(
            client,
            [w.change for w in writes],
            batch_size=options.batch_size,
            throttle_wait_seconds=options.throttle_wait_seconds,
        )
    except DataverseError as error:
        _note_failure(report, "$batch write", error, sum(len(w.calls) for w in writes))
        result.retry += [item.call for w in writes for item, _ in w.calls]
        return
    for write, answer in zip(writes, answers, strict=True):
        kinds = {kind for _, kind in write.calls}
        if answer is not None and answer.ok:
            for item, kind in write.calls:
                _count(report, kind)
                result.settled.add(item.key)
                if kind != "created":  # the notable decisions, one line each (no numbers in them)
                    _decision(
                        item.call, kind, activity=adoptions[item.key]["activityid"] if kind == "adopted" else None
                    )
            for name, keys in write.facts.items():
                setattr(report, name, getattr(report, name) + len(keys))
            if write.plan is not None:
                report.follow_ups_opened += write.plan.opened
                report.follow_ups_added += write.plan.added
                report.follow_ups_completed += write.plan.completed
            continue
        if (
            answer is not None
            and answer.status == 412
            and len(write.calls) == 1
            and "private" not in kinds
            and answer.error().code in _DUPLICATE_CODES
            and answer.content_id in (None, write.first_id)
        ):
            report.already_synced += 1  # written meanwhile (a racing run, an answer lost on the way)
            result.settled.add(write.calls[0][0].key)
            continue
        if kinds == {"private"} and answer is not None and answer.status == 404:
            result.settled.add(write.calls[0][0].key)  # removed meanwhile
            continue
        if answer is not None and answer.status == 412 and (len(write.calls) > 1 or write.plan is not None):
            # a number's calls meet a racing run (one of them written, or its follow-up changed):
            # all of them again next run, when the page query sees what is there
            result.retry += [item.call for item, _ in write.calls]
            log.info("calls of one number met a concurrent change (%s); retried next run", answer.error().code)
            continue
        for item, _ in write.calls:
            if answer is not None and answer.status in (429, 503):
                report.throttled += 1
            else:
                report.failed += 1
            result.retry.append(item.call)
        detail = answer.error() if answer is not None else "no answer"
        log.warning("call %s was not written: %s", write.calls[0][0].call.call_id, detail)


def _decision(call: EnreachCall, decision: str, **details: Any) -> None:
    values = {k: v for k, v in details.items() if v is not None}
    log.info("%s", json.dumps({"call_sync_decision": decision, "call": call.call_id, "user": call.user_id, **values}))


def _count(report: CallSyncReport, kind: str) -> None:
    if kind == "adopted":
        report.adopted += 1
    elif kind == "private":
        report.private_removed += 1
    else:
        report.created += 1
        if kind == "review":
            report.for_review += 1


def settle_parking(
    parking: ParkedCalls,
    parked: Mapping[str, ParkedCall],
    result: SyncResult,
    report: CallSyncReport,
    options: CallSyncOptions,
    now: datetime,
) -> None:
    """Park the calls that found no owner (before the checkpoint moves past them), expire those
    parked longer than ``CALL_SYNC_PARK_DAYS``, forget those now settled. A park write that fails
    puts the call back among the calls to retry, so the checkpoint stays behind it."""
    from azure.core.exceptions import AzureError

    waiting = {key for key, p in parked.items() if p.expired_at is None}
    for call in result.unmapped:
        key = call_key(call)
        earlier = parked.get(key)
        if earlier is not None and earlier.expired_at is None and now - earlier.parked_at >= options.park_for:
            parking.expire(key, now)
            waiting.discard(key)
            report.expired += 1
            _decision(call, "expired")
            log.warning(
                "call %s of Enreach user %s expired: no Dataverse user after %s days (map the user, then backfill)",
                call.call_id,
                call.user_id,
                options.park_for.days,
            )
            continue
        if earlier is not None:
            continue
        try:
            if parking.park(key, call, "no Dataverse user for the Enreach user", now):
                report.parked += 1
                _decision(call, "parked")
            waiting.add(key)
        except AzureError as error:
            log.warning("call %s could not be parked, kept for the next run: %s", call.call_id, error)
            result.retry.append(call)
            report.failed += 1
    done = [key for key in parked if key in result.settled]
    parking.release(done)
    report.unparked += sum(1 for key in done if key in waiting)
    still = waiting - set(done)
    report.waiting = len(still)
    times = [parked[key].parked_at for key in still if key in parked] + ([now] if still - set(parked) else [])
    report.oldest_parked = _iso(min(times)) if times else None
    report.parked_oldest_age_s = max(0, int((now - min(times)).total_seconds())) if times else 0
    parking.purge_expired(now)


def sync_phone_calls(
    enreach: EnreachClient,
    client: DataverseClient,
    store: CheckpointStore,
    lookup: CallerLookup,
    options: CallSyncOptions,
    *,
    parking: ParkedCalls,
    now: datetime | None = None,
    transcripts: PendingTranscripts | None = None,
) -> CallSyncReport:
    """One timer run: the window since the checkpoint and the parked calls, written, the checkpoint moved.
    ``transcripts`` keeps the calls whose transcript is still Pending (``CALL_SYNC_TRANSCRIPTS``)."""
    report = CallSyncReport()
    until = (now or datetime.now(UTC)).replace(microsecond=0)
    checkpoint = store.read(CHECKPOINT_NAME)
    if checkpoint.value:
        since = datetime.fromisoformat(checkpoint.value.replace("Z", "+00:00")) - options.overlap
    else:
        since = until - options.initial_lookback
    report.window = (_iso(since), _iso(until))
    report.checkpoint = checkpoint.value
    try:
        # Per user (UserIDs=<id>, within the run's Enreach request budget) or for the whole
        # organisation, as ENREACH_FIELD_MAP.calls.query_mode says (call_sync/query.py).
        read = read_calls(
            enreach,
            store,
            since,
            until,
            checkpoint_value=checkpoint.value,
            budget=options.enreach_request_budget,
        )
        everyone = read.users
        until = read.until
        report.window = (_iso(read.since), _iso(until))
        report.enreach_requests, report.users_left = read.requests, read.users_left
        calls = sorted(read.calls, key=lambda c: (c.modified or c.start, c.call_id))
        queue_calls_unread = False
        if options.follow_ups and options.queue_calls:
            # missed service-queue calls (nobody's: no user record holds them); Enreach throttled or
            # down: the user calls go on, and the checkpoint stays so the next run reads them again
            try:
                calls = sorted(
                    calls + enreach.service_calls(read.since, until, by="modified"),
                    key=lambda c: (c.modified or c.start, c.call_id),
                )
            except EnreachError as error:
                if isinstance(error, EnreachAuthError):
                    raise
                queue_calls_unread = True
                report.problems.append(f"queue calls (GET servicecall): {error.__class__.__name__}, read next run")
        users = UserDirectory.load(client, options.region)
    except (EnreachError, DataverseError) as error:
        report.problems.append(f"run stopped: {error.__class__.__name__}: {str(error)[:200]}")
        _record(store, report, "failed", until)
        raise
    if not read.complete:
        log.info(
            "call sync: %d users read, %d left for the next run (%s); the checkpoint stays until all are read",
            read.users_read,
            read.users_left,
            "Enreach request budget (CALL_SYNC_ENREACH_REQUEST_BUDGET) spent"
            if read.stopped_by == "budget"
            else "Enreach throttled",
        )
    for missing, count in enreach.skipped_records.items():
        report.skipped[f"unreadable record (no {missing})"] = count
    parked = {p.key: p for p in parking.all()}
    fresh = {call_key(c) for c in calls}
    retried = [p.call for key, p in parked.items() if p.expired_at is None and key not in fresh]
    everything = calls + retried
    result = sync_calls(
        everything,
        client=client,
        lookup=lookup,
        users=users,
        enreach_users={u.id.lower(): u for u in everyone},
        options=options,
        report=report,
        enreach=enreach,
        pending=transcripts,
        now=until,
    )
    if options.dry_run:
        return report
    if options.transcripts and transcripts is not None:
        from azure.core.exceptions import AzureError

        waiting = TranscriptReport()
        try:
            report.problems += settle_pending(
                enreach,
                client,
                transcripts,
                wait=options.transcript_wait,
                now=until,
                batch_size=options.batch_size,
                skip={call_key(c): True for c in result.retry},
                report=waiting,
            )
        except (AzureError, EnreachError, DataverseError) as error:  # they wait for the next run
            report.problems.append(f"pending transcripts: {error.__class__.__name__} (asked again next run)")
        report.transcripts_attached += waiting.attached
        report.transcripts_pending = waiting.pending
        report.transcripts_given_up += waiting.given_up
    settle_parking(parking, parked, result, report, options, until)
    # Move forward to `until`, but never past a call of this window that was not settled
    # (parked calls from earlier runs do not hold it: they stay parked).
    held = [c for c in result.retry if call_key(c) in fresh]
    held_at = None
    if held:
        held_at = min((c.modified or c.start) for c in held).replace(microsecond=0) - timedelta(seconds=1)
    if queue_calls_unread:  # the window's queue calls are still to be read
        queue_hold = read.since.replace(microsecond=0) - timedelta(seconds=1)
        held_at = min(held_at, queue_hold) if held_at else queue_hold
    # None while a budgeted per-user sweep goes on: the checkpoint stays behind the users not read yet
    target = close_sweep(store, read, held_at, checkpoint_value=checkpoint.value)
    if target is not None and (
        checkpoint.value is None or target > datetime.fromisoformat(checkpoint.value.replace("Z", "+00:00"))
    ):
        try:
            store.write(CHECKPOINT_NAME, _iso(target), expected=checkpoint)
            report.checkpoint = _iso(target)
        except CheckpointConflict:
            log.info("phone call checkpoint moved by a concurrent run; keeping theirs")
            report.checkpoint = store.read(CHECKPOINT_NAME).value
    _record(store, report, report.outcome, until)
    return report


def _record(store: CheckpointStore, report: CallSyncReport, outcome: str, finished: datetime) -> None:
    """The run's summary (prose), and its outcome for ``python -m call_sync status``; the run's one
    structured line is the timer's (``core.telemetry.run_logged``)."""
    log.info("%s", report.summary())
    store.save_run(CHECKPOINT_NAME, RunRecord(_iso(finished), outcome, report.summary(), report.counts()))
    synced, failed = report.created + report.adopted, report.failed + report.throttled
    metrics.call_results(synced=synced, parked=report.parked, review=report.for_review, failed=failed)
