"""Callback requests between Enreach and Dataverse: one phonecall per request, kept in step both ways.

**The activity.** Each Enreach callback request becomes one outgoing ``phonecall``, scheduled at
the requested (due) time with the expiry as its due date (``scheduledstart``/``scheduledend``),
so an agent sees it in their activities and can click to dial it. Its alternate key
``enr_enreachcallbackid`` is the request's id: a create that meets the key answers 412 and
counts as already there, so kills, retries, a notification racing the timer and two timers
racing never make a second one. It carries the requester's number (``phonenumber``), the note
(``description``), the list's name (``enr_callbacklist``) and the attempts (``enr_callbackattempts``).

**Owner.** The assigned Enreach agent's Dataverse user (``enr_enreachuserid``, as call owners are
mapped); otherwise ``DEFAULT_CRM_ASSIGNEE`` (else the application user) owns it and, when
``CALLBACK_QUEUES`` maps the request's list, a queue item puts it in that Dataverse queue so
unassigned requests are worked from the queue. **Regarding:** the customer the number matches
(the shared ``matching`` package), ambiguity settled as the call sync does
(``call_sync.customers.choose_customer``): several records and no winner = no regarding, all as
parties, and a review note. An unknown number leaves no regarding; the activity is still made.

**In step.** A request handled in Enreach completes its activity (Made), closed otherwise or
expired cancels it; the description says why. A phonecall completed or cancelled in Dynamics
closes the request in Enreach only with ``CALLBACK_CLOSE_IN_ENREACH`` on (no public evidence of a
write API: off by default). ``enr_callbackstate`` is the state both sides last agreed on
(``open``, ``closed``; ``dynamics``: closed in Dynamics and not mirrored), written in the same
change set as the app's own state change, so a change the app made never comes back as news.

**When.** The timer (``sync_callbacks``) reads the requests modified since its checkpoint (minus
an overlap), then the open activities past their expiry (a request's expiry changes nothing in
Enreach, so no modified-since query would see it), then the phonecalls closed in Dynamics. A
notification (``CallbackCreated``/``Updated``/``Changed``/``Closed``) reads its one request back
from Enreach and applies it the same way. The checkpoint never moves past a request that was not
written, so a failed notification is found by the next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.masking import mask_phone
from core.schema import CALL_SYNC, CALLBACKS, CUSTOMER_TABLES
from core.state import CheckpointConflict, CheckpointStore, RunRecord
from dataverse import BatchRequest, BatchResponse, ChangeSet, DataverseClient, DataverseError
from dataverse import filters as f
from enreach import CallbackFields, CallbackList, CallbackRequest, EnreachClient, EnreachError
from matching import CallerLookup, Candidate, to_e164

__all__ = [
    "CHECKPOINT_NAME",
    "CallbackOptions",
    "CallbackReport",
    "CallbackSync",
    "Owners",
]

log = logging.getLogger("callbacks")
CHECKPOINT_NAME = "callbacks"
DESCRIPTION_LENGTH = 2000
_ENTITY_SET = {t.logical_name: t.entity_set for t in CUSTOMER_TABLES}
_DUPLICATE_CODES = {"0x80060892", "0x80040237"}
_KEY_CHUNK = 100  # request ids per phonecall query
_SELECT = [
    "activityid",
    "statecode",
    "statuscode",
    "description",
    "scheduledstart",
    "scheduledend",
    "_ownerid_value",
    CALLBACKS.request_id_column,
    CALLBACKS.list_column,
    CALLBACKS.attempts_column,
    CALLBACKS.state_column,
]


@dataclass(frozen=True)
class CallbackOptions:
    region: str
    default_assignee: str | None = None
    queues: Mapping[str, str] = field(default_factory=dict)  # list id/name (lower) or "*" -> queue id
    close_in_enreach: bool = False
    initial_lookback: timedelta = timedelta(hours=168)
    overlap: timedelta = timedelta(minutes=5)
    batch_size: int = 100

    def queue_for(self, list_id: str | None, list_name: str | None) -> str | None:
        for key in (list_id, list_name):
            if key and key.lower() in self.queues:
                return self.queues[key.lower()]
        return self.queues.get("*")


@dataclass
class CallbackReport:
    read: int = 0
    created: int = 0
    already_synced: int = 0  # created meanwhile by a racing run or notification
    updated: int = 0
    completed: int = 0  # handled in Enreach
    cancelled: int = 0  # closed otherwise, or expired, in Enreach
    unchanged: int = 0
    queued: int = 0  # put in a Dataverse queue (no agent)
    for_review: int = 0  # several customers matched
    no_customer: int = 0  # no record matches the number: no regarding
    closed_in_enreach: int = 0  # closed in Dynamics, mirrored to Enreach
    dynamics_only: int = 0  # closed in Dynamics, not mirrored (CALLBACK_CLOSE_IN_ENREACH off)
    failed: int = 0
    throttled: int = 0
    problems: list[str] = field(default_factory=list)
    window: tuple[str, str] | None = None
    checkpoint: str | None = None

    @property
    def outcome(self) -> str:
        return "ok" if not (self.failed or self.throttled or self.problems) else "partial"

    def counts(self) -> dict[str, int]:
        names = (
            "read created already_synced updated completed cancelled unchanged queued for_review no_customer "
            "closed_in_enreach dynamics_only failed throttled"
        )
        return {name: int(getattr(self, name)) for name in names.split()}

    def summary(self) -> str:
        text = (
            f"callbacks: {self.read} read, {self.created} created, {self.already_synced} already synced, "
            f"{self.updated} updated, {self.completed} completed, {self.cancelled} cancelled, "
            f"{self.unchanged} unchanged; {self.queued} queued, {self.for_review} for review, "
            f"{self.no_customer} without customer; closed in Dynamics: {self.closed_in_enreach} closed in Enreach, "
            f"{self.dynamics_only} not mirrored; {self.failed} failed, {self.throttled} throttled (retried next run)"
        )
        if self.problems:
            text += "; problems: " + " | ".join(self.problems[:5])
        return text + f"; checkpoint {self.checkpoint or 'none'}"


@dataclass(frozen=True)
class Owners:
    """Dataverse users by Enreach user id (``enr_enreachuserid``, kept by the user id sync)."""

    by_enreach_id: Mapping[str, str]

    @classmethod
    def load(cls, client: DataverseClient) -> Owners:
        found: dict[str, str] = {}
        for user in client.query(
            "systemusers",
            select=["systemuserid", CALL_SYNC.user_id_column],
            filter=f.and_(f.eq("isdisabled", False), f.ne(CALL_SYNC.user_id_column, None)),
        ):
            if user.get(CALL_SYNC.user_id_column):
                found[str(user[CALL_SYNC.user_id_column]).lower()] = str(user["systemuserid"])
        return cls(found)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "-"


def _party(table: str, record_id: str, mask: int) -> dict[str, Any]:
    entity_set = "systemusers" if table == "systemuser" else _ENTITY_SET[table]
    return {f"partyid_{table}@odata.bind": f"/{entity_set}({record_id})", "participationtypemask": mask}


def _description(request: CallbackRequest, list_name: str | None) -> str:
    lines = [request.note or "(no note)", "", f"Enreach callback request {request.id}"]
    if list_name:
        lines.append(f"List: {list_name}")
    if request.due:
        lines.append(f"Requested for: {_when(request.due)}")
    if request.expires:
        lines.append(f"Expires: {_when(request.expires)}")
    return "\n".join(lines)[:DESCRIPTION_LENGTH]


def _closing(state: str, request: CallbackRequest, now: datetime) -> tuple[dict[str, Any], str]:
    """The state change of a request no longer open in Enreach, and the line saying why."""
    if state == "handled":
        why = f"Handled in Enreach ({request.resolution or 'closed'}), {_when(request.modified or now)}"
        return {"statecode": 1, "statuscode": 2}, why  # Completed / Made
    if state == "expired":
        why = f"Expired in Enreach at {_when(request.expires)} without being handled"
    elif state == "missing":
        why = f"No longer in Enreach ({_when(now)}): the request was removed"
    else:
        why = f"Closed in Enreach without being handled ({request.resolution or 'no reason given'}), " + _when(
            request.modified or now
        )
    return {"statecode": 2, "statuscode": 3}, why  # Canceled / Canceled


def _gone(request_id: str) -> CallbackRequest:
    """A request Enreach no longer knows (404): only its id."""
    return CallbackRequest(request_id, None, None, None, None, None, None, None, None, None, None, 0, True, None)


@dataclass
class _Plan:
    request: CallbackRequest
    kind: str  # created, updated, completed, cancelled, agreed, closed_in_enreach, dynamics_only
    items: ChangeSet
    state: str = "open"  # the request's state in Enreach when planned
    queued: bool = False
    review: bool = False
    no_customer: bool = False


class CallbackSync:
    """One callback sync: built once per process (``callbacks.runtime``), used by the timer and
    the notifications. ``lists`` and ``owners`` are read at most every ``cache_seconds``."""

    def __init__(
        self,
        enreach: EnreachClient,
        client: DataverseClient,
        lookup: CallerLookup,
        options: CallbackOptions,
        *,
        store: CheckpointStore | None = None,
        cache_seconds: float = 300.0,
    ) -> None:
        self.enreach, self.client, self.lookup, self.options, self.store = enreach, client, lookup, options, store
        self._cache_seconds = cache_seconds
        self._lists: tuple[datetime, dict[str, CallbackList]] | None = None
        self._owners: tuple[datetime, Owners] | None = None

    @property
    def names(self) -> CallbackFields:
        return self.enreach.mapping.callbacks

    # -- what is known of each side ------------------------------------------------------------

    def lists(self, now: datetime) -> dict[str, CallbackList]:
        if self._lists is None or (now - self._lists[0]).total_seconds() > self._cache_seconds:
            self._lists = (now, {item.id.lower(): item for item in self.enreach.callback_lists()})
        return self._lists[1]

    def owners(self, now: datetime) -> Owners:
        if self._owners is None or (now - self._owners[0]).total_seconds() > self._cache_seconds:
            self._owners = (now, Owners.load(self.client))
        return self._owners[1]

    def existing(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The phonecalls of these requests, by lower-case request id."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _KEY_CHUNK):
            chunk = unique[start : start + _KEY_CHUNK]
            for row in self.client.query(
                "phonecalls", select=_SELECT, filter=f.in_(CALLBACKS.request_id_column, chunk)
            ):
                found[str(row[CALLBACKS.request_id_column]).lower()] = row
        return found

    # -- applying requests -----------------------------------------------------------------------

    def apply(
        self, requests: Iterable[CallbackRequest], report: CallbackReport, now: datetime
    ) -> list[CallbackRequest]:
        """Bring Dataverse in step with these requests; answer the ones not written (to retry)."""
        latest: dict[str, CallbackRequest] = {}
        for request in requests:
            report.read += 1
            earlier = latest.get(request.id.lower())
            if earlier is None or (request.modified or now) >= (earlier.modified or now):
                latest[request.id.lower()] = request
        if not latest:
            return []
        lists = self.lists(now)
        owners = self.owners(now)
        rows = self.existing([r.id for r in latest.values()])
        fresh = [r for key, r in latest.items() if key not in rows]
        numbers = list(dict.fromkeys(n for n in (to_e164(r.number, self.options.region) for r in fresh) if n))
        customers: dict[str, tuple[Candidate, ...]] = {}
        for start in range(0, len(numbers), self.options.batch_size):
            chunk = numbers[start : start + self.options.batch_size]
            customers.update(self.lookup.find_many(chunk, chunk=self.options.batch_size))
        plans: list[_Plan] = []
        for key, request in latest.items():
            row = rows.get(key)
            if row is None:
                plans.append(self._create(request, lists, owners, customers, now))
                continue
            plan = self._update(request, row, lists, owners, now)
            if plan is None:
                report.unchanged += 1
            else:
                plans.append(plan)
        return self._write(plans, report, now)

    def _list_name(self, request: CallbackRequest, lists: Mapping[str, CallbackList]) -> str | None:
        known = lists.get((request.list_id or "").lower())
        return request.list_name or (known.name if known else None)

    def _owner(self, request: CallbackRequest, owners: Owners) -> str | None:
        agent = owners.by_enreach_id.get((request.assigned_user or "").lower())
        return agent or self.options.default_assignee

    def _create(
        self,
        request: CallbackRequest,
        lists: Mapping[str, CallbackList],
        owners: Owners,
        customers: Mapping[str, tuple[Candidate, ...]],
        now: datetime,
    ) -> _Plan:
        from call_sync.customers import choose_customer

        list_name = self._list_name(request, lists)
        agent = owners.by_enreach_id.get((request.assigned_user or "").lower())
        owner = agent or self.options.default_assignee
        number = to_e164(request.number, self.options.region)
        choice = choose_customer(customers.get(number or "", ()), owner or "")
        regarding = choice.regarding
        who = (regarding.name if regarding and regarding.name else None) or request.contact_name
        who = who or (mask_phone(number) if number else "an unknown number")
        subject = f"Callback request: {who}" + (f" ({list_name})" if list_name else "")
        state = request.state(now, self.names)
        body: dict[str, Any] = {
            "subject": subject[:200],
            "phonenumber": (number or request.number or "")[:200] or None,
            "directioncode": True,  # outgoing: the agent calls the customer back
            "scheduledstart": _iso(request.due or request.created or now),
            "description": _description(request, list_name),
            CALLBACKS.request_id_column: request.id,
            CALLBACKS.list_column: (list_name or "")[: CALLBACKS.list_length] or None,
            CALLBACKS.attempts_column: request.attempts,
            CALLBACKS.state_column: "open" if state == "open" else "closed",
        }
        if request.expires:
            body["scheduledend"] = _iso(request.expires)
        parties: list[dict[str, Any]] = []
        if owner:
            body["ownerid@odata.bind"] = f"/systemusers({owner})"
            parties.append(_party("systemuser", owner, 1))  # from: the agent who calls back
        if regarding is not None:
            body[f"regardingobjectid_{regarding.table}_phonecall@odata.bind"] = (
                f"/{_ENTITY_SET[regarding.table]}({regarding.id})"
            )
        for record in choice.parties:
            parties.append(_party(record.table, record.id, 2))  # to: the customer
        if choice.review:
            body[CALL_SYNC.review_column] = choice.review
        if parties:
            body["phonecall_activity_parties"] = parties
        requests = [BatchRequest("POST", "phonecalls", body, content_id="1")]
        queue = None if agent else self.options.queue_for(request.list_id, list_name)
        if queue and state == "open":
            requests.append(
                BatchRequest(
                    "POST",
                    "queueitems",
                    {"objectid_phonecall@odata.bind": "$1", "queueid@odata.bind": f"/queues({queue})"},
                )
            )
        kind = "created"
        if state != "open":  # created and closed in one go: a request handled between two polls
            change, why = _closing(state, request, now)
            requests.append(
                BatchRequest("PATCH", "$1", {"description": (body["description"] + "\n" + why)[:DESCRIPTION_LENGTH]})
            )
            requests.append(BatchRequest("PATCH", "$1", change))
        return _Plan(
            request,
            kind,
            ChangeSet(requests),
            state=state,
            queued=bool(queue and state == "open"),
            review=bool(choice.review),
            no_customer=not choice.parties,
        )

    def _update(
        self,
        request: CallbackRequest,
        row: Mapping[str, Any],
        lists: Mapping[str, CallbackList],
        owners: Owners,
        now: datetime,
        *,
        gone: bool = False,
    ) -> _Plan | None:
        path = f"phonecalls({row['activityid']})"
        match = {"If-Match": "*"}  # update only, never create
        state = "missing" if gone else request.state(now, self.names)
        agreed = str(row.get(CALLBACKS.state_column) or "open")
        if row.get("statecode") != 0:
            # Closed in Dynamics already: never reopened. Once Enreach is closed too, both agree.
            if state != "open" and agreed != "closed":
                return _Plan(request, "agreed", self._reopened(row, {CALLBACKS.state_column: "closed"}))
            return None
        changes: dict[str, Any] = {}
        list_name = self._list_name(request, lists)
        if not gone:
            if (row.get(CALLBACKS.attempts_column) or 0) != request.attempts:
                changes[CALLBACKS.attempts_column] = request.attempts
            if request.due and _differs(row.get("scheduledstart"), request.due):
                changes["scheduledstart"] = _iso(request.due)
            if request.expires and _differs(row.get("scheduledend"), request.expires):
                changes["scheduledend"] = _iso(request.expires)
            if list_name and row.get(CALLBACKS.list_column) != list_name[: CALLBACKS.list_length]:
                changes[CALLBACKS.list_column] = list_name[: CALLBACKS.list_length]
            agent = owners.by_enreach_id.get((request.assigned_user or "").lower())
            if agent and str(row.get("_ownerid_value") or "").lower() != agent.lower():
                changes["ownerid@odata.bind"] = f"/systemusers({agent})"
        if state == "open":
            if not changes:
                return None
            return _Plan(request, "updated", ChangeSet([BatchRequest("PATCH", path, changes, headers=dict(match))]))
        change, why = _closing(state, request, now)
        changes["description"] = (str(row.get("description") or "") + "\n" + why).strip()[:DESCRIPTION_LENGTH]
        changes[CALLBACKS.state_column] = "closed"
        kind = "completed" if change["statecode"] == 1 else "cancelled"
        return _Plan(
            request,
            kind,
            ChangeSet(
                [
                    BatchRequest("PATCH", path, changes, headers=dict(match)),
                    BatchRequest("PATCH", path, change, headers=dict(match)),
                ]
            ),
        )

    @staticmethod
    def _reopened(row: Mapping[str, Any], changes: Mapping[str, Any]) -> ChangeSet:
        """Change a closed phonecall: reopen, update, close again as it was (one atomic change set)."""
        path = f"phonecalls({row['activityid']})"
        match = {"If-Match": "*"}
        closed = {"statecode": row.get("statecode"), "statuscode": row.get("statuscode")}
        return ChangeSet(
            [
                BatchRequest("PATCH", path, {"statecode": 0, "statuscode": 1}, headers=dict(match)),
                BatchRequest("PATCH", path, dict(changes), headers=dict(match)),
                BatchRequest("PATCH", path, closed, headers=dict(match)),
            ]
        )

    def _write(self, plans: Sequence[_Plan], report: CallbackReport, now: datetime) -> list[CallbackRequest]:
        retry: list[CallbackRequest] = []
        raced: list[CallbackRequest] = []
        size = self.options.batch_size
        for start in range(0, len(plans), size):
            chunk = plans[start : start + size]
            try:
                answers: Sequence[BatchResponse | None] = self.client.batch_each([p.items for p in chunk])
            except DataverseError as error:
                _note_failure(report, "$batch write", error, len(chunk))
                retry += [p.request for p in chunk]
                continue
            for plan, answer in zip(chunk, answers, strict=True):
                if answer is not None and answer.ok:
                    _count(report, plan)
                    log.info("callback %s: %s", plan.request.id, plan.kind)
                elif (
                    plan.kind == "created"
                    and answer is not None
                    and answer.status == 412
                    and answer.error().code in _DUPLICATE_CODES
                ):
                    report.already_synced += 1  # a racing run or notification made it: apply on top of theirs
                    raced.append(plan.request)
                else:
                    if answer is not None and answer.status in (429, 503):
                        report.throttled += 1
                    else:
                        report.failed += 1
                    retry.append(plan.request)
                    detail = answer.error() if answer is not None else "no answer"
                    log.warning("callback request %s was not written: %s", plan.request.id, detail)
        if raced:
            read = report.read
            retry += self.apply(raced, report, now)  # now they exist: an update at most
            report.read = read
        return retry

    # -- one request (a notification) ----------------------------------------------------------

    def apply_one(self, request_id: str, *, now: datetime | None = None) -> tuple[CallbackReport, bool]:
        """Read one request back from Enreach and apply it; (report, written). A request Enreach
        does not know cancels its activity, if it has one."""
        now = now or datetime.now(UTC)
        report = CallbackReport()
        request = self.enreach.callback(request_id)
        if request is None:
            rows = self.existing([request_id])
            row = rows.get(request_id.lower())
            if row is None:
                return report, True
            plan = self._update(_gone(request_id), row, {}, Owners({}), now, gone=True)
            left = self._write([plan], report, now) if plan else []
            return report, not left
        retry = self.apply([request], report, now)
        return report, not retry

    # -- the timer -----------------------------------------------------------------------------

    def expire_due(self, report: CallbackReport, now: datetime) -> list[CallbackRequest]:
        """Open activities past their expiry: read each request back (it may have been extended,
        or handled) and apply it. Nothing in Enreach changes when a request expires."""
        retry: list[CallbackRequest] = []
        rows = list(
            self.client.query(
                "phonecalls",
                select=_SELECT,
                filter=f.and_(
                    f.ne(CALLBACKS.request_id_column, None),
                    f.eq("statecode", 0),
                    f.lt("scheduledend", now.astimezone(UTC)),
                ),
            )
        )
        for row in rows:
            request_id = str(row[CALLBACKS.request_id_column])
            request = self.enreach.callback(request_id)
            if request is not None:
                retry += self.apply([request], report, now)
                continue
            plan = self._update(_gone(request_id), row, {}, Owners({}), now, gone=True)
            if plan:
                retry += self._write([plan], report, now)
        return retry

    def closed_in_dynamics(self, report: CallbackReport, now: datetime) -> None:
        """Phonecalls of open requests that a user completed or cancelled in Dynamics: close the
        request in Enreach (``CALLBACK_CLOSE_IN_ENREACH``), or record that it stays open there."""
        states = ["open", "dynamics"] if self.options.close_in_enreach else ["open"]
        rows = list(
            self.client.query(
                "phonecalls",
                select=_SELECT,
                filter=f.and_(
                    f.ne(CALLBACKS.request_id_column, None),
                    f.ne("statecode", 0),
                    f.in_(CALLBACKS.state_column, states),
                ),
            )
        )
        for row in rows:
            request_id = str(row[CALLBACKS.request_id_column])
            if not self.options.close_in_enreach:
                marker = "dynamics"
            else:
                try:
                    self.enreach.close_callback(request_id, handled=row.get("statecode") == 1)
                except EnreachError as error:
                    _note_failure(report, "closing in Enreach", error, 1)
                    continue
                marker = "closed"
            plan = _Plan(
                _gone(request_id),
                "closed_in_enreach" if marker == "closed" else "dynamics_only",
                self._reopened(row, {CALLBACKS.state_column: marker}),
            )
            self._write([plan], report, now)

    def poll(self, *, now: datetime | None = None) -> CallbackReport:
        """One timer run: the requests changed since the checkpoint, the expired ones, the ones
        closed in Dynamics; then the checkpoint moves, never past a request not written."""
        if self.store is None:
            raise ValueError("a CheckpointStore is needed to poll")
        report = CallbackReport()
        # to the end of the current second (Enreach times have whole seconds; the overlap re-reads late ones)
        until = (now or datetime.now(UTC)).replace(microsecond=0) + timedelta(seconds=1)
        checkpoint = self.store.read(CHECKPOINT_NAME)
        if checkpoint.value:
            since = datetime.fromisoformat(checkpoint.value.replace("Z", "+00:00")) - self.options.overlap
        else:
            since = until - self.options.initial_lookback
        report.window = (_iso(since), _iso(until))
        report.checkpoint = checkpoint.value
        try:
            requests = self.enreach.callbacks(since, until)
        except (EnreachError, DataverseError) as error:
            report.problems.append(f"run stopped: {error.__class__.__name__}: {str(error)[:200]}")
            self._record(report, "failed", until)
            raise
        for missing, count in self.enreach.skipped_records.items():
            report.problems.append(f"{count} unreadable callback requests (no {missing})")
        try:
            retry = self.apply(requests, report, until)
        except (EnreachError, DataverseError) as error:
            _note_failure(report, "reading Dataverse", error, len(requests))
            retry = list(requests)
        for extra in (self.expire_due, self.closed_in_dynamics):
            try:
                extra(report, until)  # what these leave undone is found again by the next run
            except (EnreachError, DataverseError) as error:
                _note_failure(report, extra.__name__.replace("_", " "), error, 1)
        target = until
        if retry:
            moments = [r.modified for r in retry]
            if any(m is None for m in moments):
                target = since + self.options.overlap if checkpoint.value else since  # cannot tell: stay
            else:
                target = min(m for m in moments if m is not None).replace(microsecond=0) - timedelta(seconds=1)
        if checkpoint.value is None or target > datetime.fromisoformat(checkpoint.value.replace("Z", "+00:00")):
            try:
                self.store.write(CHECKPOINT_NAME, _iso(target), expected=checkpoint)
                report.checkpoint = _iso(target)
            except CheckpointConflict:
                log.info("callback checkpoint moved by a concurrent run; keeping theirs")
                report.checkpoint = self.store.read(CHECKPOINT_NAME).value
        self._record(report, report.outcome, until)
        return report

    def _record(self, report: CallbackReport, outcome: str, finished: datetime) -> None:
        log.info("%s", report.summary())
        if self.store is not None:
            self.store.save_run(CHECKPOINT_NAME, RunRecord(_iso(finished), outcome, report.summary(), report.counts()))


def _differs(stored: Any, moment: datetime) -> bool:
    if not stored:
        return True
    try:
        value = datetime.fromisoformat(str(stored).replace("Z", "+00:00"))
    except ValueError:
        return True
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return abs((value - moment).total_seconds()) >= 1


def _count(report: CallbackReport, plan: _Plan) -> None:
    if plan.kind == "created":
        report.created += 1
        report.queued += int(plan.queued)
        report.for_review += int(plan.review)
        report.no_customer += int(plan.no_customer)
        if plan.state == "handled":
            report.completed += 1
        elif plan.state != "open":
            report.cancelled += 1
    elif plan.kind == "updated":
        report.updated += 1
    elif plan.kind == "completed":
        report.completed += 1
    elif plan.kind == "cancelled":
        report.cancelled += 1
    elif plan.kind == "closed_in_enreach":
        report.closed_in_enreach += 1
    elif plan.kind == "dynamics_only":
        report.dynamics_only += 1


def _note_failure(report: CallbackReport, what: str, error: Exception, count: int) -> None:
    from dataverse import Throttled

    if isinstance(error, Throttled):
        report.throttled += count
    else:
        report.failed += count
    line = f"{what}: {error.__class__.__name__} for {count} requests ({str(error)[:160]})"
    report.problems.append(line)
    log.warning("%s", line)
