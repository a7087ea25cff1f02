"""How the call sync asks Enreach for calls: the query mode and the per-run request budget.

``ENREACH_FIELD_MAP.calls.query_mode`` (``enreach._mapping``):

* ``all``: one ``GET calls`` over the modified window for the whole organisation (one request
  per 31 days of window), for tenants where the API user may read everyone's calls.
* ``per_user`` (default, as every public client asks): one ``GET calls?UserIDs=<id>`` per user.
  A large tenant would spend thousands of requests per run, and Enreach answers 429 past limits
  it does not publish, so a run sends at most ``CALL_SYNC_ENREACH_REQUEST_BUDGET`` requests
  (``GET users`` and the directory count too). Users are read in id order; when the budget runs
  out (or Enreach stays throttled past the retry policy) the run syncs what it read and saves a
  *sweep* beside the checkpoint: the window it pinned, the last user read and a digest of the
  users read so far. The checkpoint does not move until a run has read every user for that
  window; the next run goes on from the next user over the same window. A user added to or
  removed from the part already read (the digest differs) restarts the sweep over the same
  window, so nobody's calls are skipped. Calls a run could not write hold the checkpoint when
  the sweep completes (``hold``), as in a run without a budget. Every run reads at least one
  user, so a sweep always ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.state import Checkpoint, CheckpointConflict, CheckpointStore
from enreach import EnreachCall, EnreachClient, EnreachUnavailable, EnreachUser

__all__ = ["SWEEP_NAME", "CallsRead", "close_sweep", "read_calls"]

log = logging.getLogger("call_sync")
SWEEP_NAME = "phone_calls_sweep"
_WINDOW = timedelta(days=31)  # the calls resource's longest range (enreach._client.MAX_CALL_RANGE)


@dataclass
class CallsRead:
    calls: list[EnreachCall]
    users: list[EnreachUser]
    since: datetime
    until: datetime
    complete: bool  # every user read for [since, until): the checkpoint may move
    users_read: int  # by this run
    users_left: int  # for the next runs of this sweep
    requests: int  # Enreach requests this run sent (retries included)
    hold: datetime | None  # the earliest unsettled call of earlier runs of this sweep
    stopped_by: str | None  # "budget" or "throttled" when the sweep goes on next run
    sweep: Checkpoint  # the stored sweep as read (its ETag guards the write back)
    last_user: str | None = None
    digest: str | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _digest(users: Sequence[EnreachUser]) -> str:
    return hashlib.sha256("\n".join(u.id.lower() for u in users).encode()).hexdigest()[:32]


def _load_sweep(sweep: Checkpoint, checkpoint_value: str | None) -> dict[str, str] | None:
    """The sweep in progress from this checkpoint, or None (none, unreadable, or from another one)."""
    if not sweep.value:
        return None
    try:
        value = json.loads(sweep.value)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("checkpoint") != (checkpoint_value or ""):
        return None  # the checkpoint moved since (another run, a reset): start afresh
    if not all(isinstance(value.get(k), str) for k in ("since", "until", "after", "digest")):
        return None
    return value


def read_calls(
    enreach: EnreachClient,
    store: CheckpointStore,
    since: datetime,
    until: datetime,
    *,
    checkpoint_value: str | None,
    budget: int,
) -> CallsRead:
    """The calls modified in the window, read as ``calls.query_mode`` says, within ``budget``
    Enreach requests (0 = no limit); a sweep in progress from this checkpoint pins the window."""
    first = enreach.requests_sent
    enreach.skipped_records = {}
    users = enreach.users()
    sweep_row = store.read(SWEEP_NAME)
    if enreach.mapping.calls.query_mode == "all":
        everyone = enreach.calls(since, until, by="modified", users=users)
        return CallsRead(
            everyone, users, since, until, True, len(users), 0, enreach.requests_sent - first, None, None, sweep_row
        )
    ordered = sorted(users, key=lambda u: u.id.lower())
    sweep = _load_sweep(sweep_row, checkpoint_value)
    hold: datetime | None = None
    done: list[EnreachUser] = []
    remaining = ordered
    if sweep is not None:
        since, until = _when(sweep["since"]), _when(sweep["until"])
        hold = _when(sweep["hold"]) if sweep.get("hold") else None
        done = [u for u in ordered if u.id.lower() <= sweep["after"]]
        if _digest(done) == sweep["digest"]:
            remaining = [u for u in ordered if u.id.lower() > sweep["after"]]
        else:
            log.info("call sync: the users changed during a sweep; reading every user again for its window")
            done = []
    cost = max(1, math.ceil((until - since) / _WINDOW))  # requests per user
    calls: list[EnreachCall] = []
    stopped: str | None = None
    read = 0
    for user in remaining:
        used = enreach.requests_sent - first
        if budget and read and used + cost > budget:
            stopped = "budget"
            break
        try:
            calls += enreach.user_calls(user, since, until, by="modified")
        except EnreachUnavailable:
            if not read:
                raise  # nothing read: the run fails as before, the sweep stays as it was
            stopped = "throttled"
            break
        done.append(user)
        read += 1
    result = CallsRead(
        calls,
        users,
        since,
        until,
        stopped is None,
        read,
        len(remaining) - read,
        enreach.requests_sent - first,
        hold,
        stopped,
        sweep_row,
    )
    if done:
        result.last_user, result.digest = done[-1].id.lower(), _digest(done)
    return result


def close_sweep(
    store: CheckpointStore, read: CallsRead, held: datetime | None, *, checkpoint_value: str | None
) -> datetime | None:
    """Where the checkpoint may move after the run: the window's end, or just before the earliest
    call not settled (this run's ``held`` or an earlier run's of the same sweep); None while the
    sweep goes on (its progress saved here)."""
    holds = [h for h in (read.hold, held) if h is not None]
    hold = min(holds) if holds else None
    try:
        if read.complete:
            if read.sweep.value:
                store.write(SWEEP_NAME, "", expected=read.sweep)  # done: the next run starts a new one
            return min(read.until, hold) if hold else read.until
        value = {
            "checkpoint": checkpoint_value or "",
            "since": _iso(read.since),
            "until": _iso(read.until),
            "after": read.last_user or "",
            "digest": read.digest or _digest([]),
            "hold": _iso(hold) if hold else "",
        }
        store.write(SWEEP_NAME, json.dumps(value), expected=read.sweep)
    except CheckpointConflict:
        log.info("call sync sweep moved by a concurrent run; keeping theirs")
        return None
    return None
