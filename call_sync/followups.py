"""Missed calls become follow-ups: one open follow-up (a task) per caller, never two.

* A missed incoming call (``EndResult`` non-zero, the evidence's reading) is written as a
  phonecall marked missed (subject "Missed call from ...", ``enr_callresult`` = "Missed").
* It opens the caller's follow-up: a task keyed by the caller's E.164 number in the alternate-key
  column ``enr_followupkey``, owned by the customer's owning user (else the call's owner), regarding
  what the call is regarding, due ``CALL_SYNC_FOLLOW_UP_DUE_HOURS`` after the call; for a missed
  queue call also put in the Dataverse queue mapped from the Enreach queue (``CALL_SYNC_QUEUE_MAP``).
* A further miss from the same number adds a line to that task (the key makes a second open one
  impossible); a later answered call or callback with the number completes it, saying so, and
  clears the key so the next miss opens a new one.

Exactly once: the calls of one number on a page and their follow-up changes go in one change set
(``plan_number``): the phonecalls' own alternate key makes a replay fail as a whole, so a
follow-up is never opened, added to or completed twice for the same call. Lines name the call
key, so merging is idempotent too. Follow-up rows are read in the page query (no extra round
trip) and written with ``If-Match`` on their ETag: a run racing another fails the change set and
the calls are retried next run, when the row is read again.

Callbacks (``callbacks/``): ``FollowUpHook`` is where a callback request for the same caller would
be merged into the same piece of work; not done yet (the hook does nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import Any, Protocol

from core.schema import FOLLOW_UPS
from dataverse import BatchRequest, key_path, query_path
from dataverse import filters as f
from enreach import EnreachCall

__all__ = [
    "FOLLOW_UP_COLUMNS",
    "FollowUpHook",
    "FollowUpPlan",
    "NoCallbacks",
    "follow_up_query",
    "is_missed",
    "plan_number",
]

FOLLOW_UP_COLUMNS = ["activityid", FOLLOW_UPS.follow_up_key_column, "subject", "description", "_ownerid_value"]
DESCRIPTION_LENGTH = 2000
TASK_COMPLETED = (1, 5)  # statecode Completed, statuscode Completed


def is_missed(call: EnreachCall) -> bool:
    """An incoming call nobody answered (``EndResult`` non-zero: mokso/BeneCallArchiver's reading)."""
    return call.direction == "in" and bool(call.end_result)


def follow_up_query(numbers: Sequence[str]) -> BatchRequest:
    """The open follow-ups of these numbers (one GET inside the page query's ``$batch``)."""
    return BatchRequest(
        "GET",
        query_path("tasks", select=FOLLOW_UP_COLUMNS, filter=f.in_(FOLLOW_UPS.follow_up_key_column, list(numbers))),
    )


def _when(call: EnreachCall) -> str:
    return call.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _missed_line(key: str, call: EnreachCall) -> str:
    where = f" (queue {call.user_name or call.answer_queue_id})" if call.queue_call else ""
    return f"Missed call {key} at {_when(call)}{where}"


class FollowUpHook(Protocol):
    """Where the callback requests (issue: callbacks/) join a follow-up: one piece of work per caller."""

    def extra_requests(self, number: str, task_path: str) -> list[BatchRequest]: ...


class NoCallbacks:
    """The callbacks package has not landed: nothing to merge."""

    def extra_requests(self, number: str, task_path: str) -> list[BatchRequest]:
        return []


@dataclass
class FollowUpPlan:
    """What one number's calls on a page do to its follow-up: requests to append to its change set."""

    requests: list[BatchRequest] = field(default_factory=list)
    opened: int = 0
    added: int = 0  # misses added to an open follow-up
    completed: int = 0
    completes: dict[str, str] = field(default_factory=dict)  # call key -> line for its phonecall description


def plan_number(
    number: str,
    calls: Sequence[tuple[str, EnreachCall, str | None]],
    existing: Mapping[str, Any] | None,
    *,
    who: str,
    follow_up_owner: str | None,
    regarding_bind: tuple[str, str] | None,
    queue_for: Mapping[str, str],
    due: timedelta,
    hook: FollowUpHook | None = None,
) -> FollowUpPlan:
    """Fold one number's new calls (oldest first: key, call, phonecall owner) into its follow-up.

    ``existing`` is the open follow-up row read by the page query (with its ``@odata.etag``);
    ``regarding_bind`` is (navigation property suffix table, "/entityset(id)") of what the calls
    are regarding; ``queue_for`` maps an Enreach queue id to a Dataverse queue id."""
    plan = FollowUpPlan()
    hook = hook or NoCallbacks()
    row = dict(existing) if existing is not None else None
    lines: list[str] = str(row.get("description") or "").splitlines() if row else []
    new_lines: list[str] = []
    new_queue: str | None = None
    first_miss: EnreachCall | None = None
    open_new = False
    for key, call, owner in calls:
        if is_missed(call):
            line = _missed_line(key, call)
            if any(key in existing_line for existing_line in lines + new_lines):
                continue
            if row is None and not open_new:
                open_new, first_miss = True, call
                follow_up_owner = follow_up_owner or owner
            new_lines.append(line)
            if call.queue_call and call.answer_queue_id:
                new_queue = new_queue or queue_for.get(call.answer_queue_id.lower())
            continue
        # answered, in or out: the caller was reached
        done = f"Completed: {'callback' if call.direction == 'out' else 'answered call'} {key} at {_when(call)}"
        if row is not None:
            path = f"tasks({row['activityid']})"
            plan.requests += [
                BatchRequest(
                    "PATCH",
                    path,
                    {
                        FOLLOW_UPS.follow_up_key_column: None,
                        "description": "\n".join([*lines, *new_lines, done])[-DESCRIPTION_LENGTH:],
                    },
                    headers={"If-Match": str(row.get("@odata.etag") or "*")},
                    content_id=str(1000 + len(plan.requests)),
                ),
                BatchRequest(
                    "PATCH",
                    path,
                    {"statecode": TASK_COMPLETED[0], "statuscode": TASK_COMPLETED[1]},
                    headers={"If-Match": "*"},
                    content_id=str(1001 + len(plan.requests)),
                ),
            ]
            plan.completed += 1
            plan.completes[key] = f"Completes the follow-up of {who} ({len(lines) + len(new_lines)} missed calls)"
            row, lines, new_lines = None, [], []
        elif open_new:
            # opened and answered within the same page: the misses are on the phonecalls, no task needed
            plan.completes[key] = f"Answers {len(new_lines)} missed calls of {who} (no follow-up left open)"
            open_new, new_lines, first_miss = False, [], None
    if row is not None and new_lines:
        plan.requests.append(
            BatchRequest(
                "PATCH",
                f"tasks({row['activityid']})",
                {
                    "subject": _subject(who, len(lines) + len(new_lines)),
                    "description": "\n".join([*lines, *new_lines])[-DESCRIPTION_LENGTH:],
                },
                headers={"If-Match": str(row.get("@odata.etag") or "*")},
                content_id=str(1000 + len(plan.requests)),
            )
        )
        plan.added += len(new_lines)
    elif open_new and first_miss is not None:
        task_id = str(uuid.uuid4())
        body: dict[str, Any] = {
            "activityid": task_id,
            "subject": _subject(who, len(new_lines)),
            "description": "\n".join(new_lines)[-DESCRIPTION_LENGTH:],
            "scheduledend": (first_miss.start + due).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "prioritycode": 2,  # High
            FOLLOW_UPS.follow_up_key_column: number,
        }
        if follow_up_owner:
            body["ownerid@odata.bind"] = f"/systemusers({follow_up_owner})"
        if regarding_bind is not None:
            table, target = regarding_bind
            body[f"regardingobjectid_{table}_task@odata.bind"] = target
        plan.requests.append(BatchRequest("POST", "tasks", body, content_id=str(1000 + len(plan.requests))))
        if new_queue:
            plan.requests.append(
                BatchRequest(
                    "POST",
                    "queueitems",
                    {"queueid@odata.bind": f"/queues({new_queue})", "objectid_task@odata.bind": f"/tasks({task_id})"},
                    content_id=str(1000 + len(plan.requests)),
                )
            )
        plan.requests += hook.extra_requests(number, key_path("tasks", {FOLLOW_UPS.follow_up_key_column: number}))
        plan.opened += 1
    return plan


def _subject(who: str, misses: int) -> str:
    return (f"Call back {who}" + (f" ({misses} missed calls)" if misses > 1 else " (missed call)"))[:200]
