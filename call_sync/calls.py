"""``sync_phone_calls``: Enreach Work calls become Dataverse phone call activities, exactly once.

Per run: read Enreach call events modified since the checkpoint (minus an overlap, for
late records), keep Work calls of at least ``CALL_DURATION_LIMIT`` seconds, map each to its
Dataverse owner (Enreach user id; for mobile calls the user's mobile number; else
``DEFAULT_CRM_ASSIGNEE``), find the customers of a whole page of calls in one query (the
routing package's matching), and write each call as one atomic change set: create the
phonecall (with the Enreach call id in an alternate-key column, parties and regarding), then
complete it. A call that already exists fails its create with 412 and counts as done, so
crashes, retries, replayed timers and overlapping runs never duplicate a call. The
checkpoint (Table Storage) moves only to the start of the window's first failed call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.masking import mask_phone
from core.schema import CALL_SYNC, CUSTOMER_TABLES
from core.state import CheckpointConflict, CheckpointStore
from dataverse import BatchRequest, ChangeSet, DataverseClient
from dataverse import filters as f
from enreach import EnreachCall, EnreachClient, EnreachUser
from routing.lookup import CallerLookup
from routing.numbers import to_e164
from routing.rules import Candidate

__all__ = ["CHECKPOINT_NAME", "CallSyncOptions", "CallSyncReport", "UserDirectory", "sync_calls", "sync_phone_calls"]

log = logging.getLogger("call_sync")
CHECKPOINT_NAME = "phone_calls"
INITIAL_LOOKBACK = timedelta(days=1)
_ENTITY_SET = {t.logical_name: t.entity_set for t in CUSTOMER_TABLES}
_DUPLICATE_CODES = {"0x80060892", "0x80040237"}


@dataclass(frozen=True)
class CallSyncOptions:
    region: str
    duration_limit_seconds: int = 0
    default_assignee: str | None = None
    overlap: timedelta = timedelta(minutes=15)
    batch_size: int = 100
    dry_run: bool = False


@dataclass
class CallSyncReport:
    read: int = 0
    created: int = 0
    already_synced: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    window: tuple[str, str] | None = None
    checkpoint: str | None = None

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items())) or "none"
        return (
            f"phone calls: {self.read} read, {self.created} created, {self.already_synced} already synced, "
            f"{self.failed} failed; skipped: {skipped}; checkpoint {self.checkpoint or 'none'}"
        )


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
    """The phonecall's alternate-key value: the Enreach call id, per user where one call has several."""
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


def _customer(candidates: Sequence[Candidate]) -> Candidate | None:
    """The one customer a number belongs to; None when unknown or ambiguous (never a guess)."""
    return candidates[0] if len(candidates) == 1 else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def phonecall_body(call: EnreachCall, owner: str, number: str | None, customer: Candidate | None) -> dict[str, Any]:
    outgoing = call.direction == "out"
    who = (customer.name if customer and customer.name else None) or (mask_phone(number) if number else "unknown")
    body: dict[str, Any] = {
        "subject": f"{'Outgoing call to' if outgoing else 'Incoming call from'} {who}"[:200],
        "phonenumber": (number or call.other_number or "")[:200] or None,
        "directioncode": outgoing,
        "actualstart": _iso(call.start),
        "actualend": _iso(call.end or call.start + timedelta(seconds=call.duration_seconds)),
        "actualdurationminutes": max(1, math.ceil(call.duration_seconds / 60)),
        "description": f"Enreach call {call.call_id}",
        CALL_SYNC.call_id_column: call_key(call),
        "ownerid@odata.bind": f"/systemusers({owner})",
    }
    user_party = {"partyid_systemuser@odata.bind": f"/systemusers({owner})"}
    parties = [{**user_party, "participationtypemask": 1 if outgoing else 2}]
    if customer is not None:
        entity_set = _ENTITY_SET[customer.table]
        body[f"regardingobjectid_{customer.table}_phonecall@odata.bind"] = f"/{entity_set}({customer.id})"
        parties.append(
            {
                f"partyid_{customer.table}@odata.bind": f"/{entity_set}({customer.id})",
                "participationtypemask": 2 if outgoing else 1,
            }
        )
    body["phonecall_activity_parties"] = parties
    return body


def _changeset(call: EnreachCall, body: dict[str, Any]) -> ChangeSet:
    # A phone call cannot be created closed: create, then complete it (Made 2 / Received 4), atomically.
    status = 2 if call.direction == "out" else 4
    return ChangeSet(
        [
            BatchRequest("POST", "phonecalls", body, content_id="1"),
            BatchRequest("PATCH", "$1", {"statecode": 1, "statuscode": status}),
        ]
    )


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
) -> list[EnreachCall]:
    """Write the calls that should be synced; return the calls that failed (to be retried)."""
    kept: list[tuple[EnreachCall, str, str | None]] = []
    seen: set[str] = set()
    for call in calls:
        report.read += 1
        key = call_key(call)
        if key in seen:
            report.skip("repeated event")
            continue
        seen.add(key)
        if call.classification.lower() != "work":
            report.skip(f"{call.classification.lower()} call")
            continue
        if call.duration_seconds < options.duration_limit_seconds:
            report.skip("shorter than CALL_DURATION_LIMIT")
            continue
        owner = _owner(call, users, enreach_users, options.region) or options.default_assignee
        if owner is None:
            report.skip("unmapped mobile user" if call.is_mobile else "unmapped user")
            continue
        kept.append((call, owner, to_e164(call.other_number, options.region)))
    # Customers of every kept call: one query per batch-size of distinct numbers.
    customers = lookup.find_many([n for _, _, n in kept if n], chunk=options.batch_size)
    failed: list[EnreachCall] = []
    for start in range(0, len(kept), options.batch_size):
        page = kept[start : start + options.batch_size]
        items = [
            _changeset(call, phonecall_body(call, owner, n, _customer(customers.get(n or "", ()))))
            for call, owner, n in page
        ]
        if options.dry_run:
            report.created += len(items)
            continue
        answers = client.batch_each_parallel(items, max_batch=options.batch_size, idempotent=True)
        for (call, _, _), answer in zip(page, answers, strict=True):
            if answer is not None and answer.ok:
                report.created += 1
            elif answer is not None and answer.status == 412 and answer.error().code in _DUPLICATE_CODES:
                report.already_synced += 1
            else:
                report.failed += 1
                failed.append(call)
                detail = answer.error() if answer is not None else "no answer"
                log.warning("call %s was not written: %s", call.call_id, detail)
        if on_progress:
            on_progress(len(page))
    return failed


def sync_phone_calls(
    enreach: EnreachClient,
    client: DataverseClient,
    store: CheckpointStore,
    lookup: CallerLookup,
    options: CallSyncOptions,
    *,
    now: datetime | None = None,
) -> CallSyncReport:
    """One timer run: the window since the checkpoint, written, and the checkpoint moved."""
    report = CallSyncReport()
    until = (now or datetime.now(UTC)).replace(microsecond=0)
    checkpoint = store.read(CHECKPOINT_NAME)
    if checkpoint.value:
        since = datetime.fromisoformat(checkpoint.value.replace("Z", "+00:00")) - options.overlap
    else:
        since = until - INITIAL_LOOKBACK
    report.window = (_iso(since), _iso(until))
    calls = sorted(enreach.calls(since, until, by="modified"), key=lambda c: (c.modified or c.start, c.call_id))
    users = UserDirectory.load(client, options.region)
    enreach_users = {u.id.lower(): u for u in enreach.users()} if any(c.is_mobile for c in calls) else {}
    failed = sync_calls(
        calls, client=client, lookup=lookup, users=users, enreach_users=enreach_users, options=options, report=report
    )
    if options.dry_run:
        return report
    # Move forward to `until`, but never past a failed call: the next run retries it.
    target = until
    if failed:
        target = min((c.modified or c.start) for c in failed).replace(microsecond=0) - timedelta(seconds=1)
    report.checkpoint = checkpoint.value
    if checkpoint.value is None or target > datetime.fromisoformat(checkpoint.value.replace("Z", "+00:00")):
        try:
            store.write(CHECKPOINT_NAME, _iso(target), expected=checkpoint)
            report.checkpoint = _iso(target)
        except CheckpointConflict:
            log.info("phone call checkpoint moved by a concurrent run; keeping theirs")
            report.checkpoint = store.read(CHECKPOINT_NAME).value
    log.info("%s", report.summary())
    return report
