"""Presence sync decisions: Omnichannel <-> Enreach mirroring, DND during calls, no echo loops.

Retry safety: an event's effect on the agent's state and the Omnichannel write it owes are saved
together (``AgentState.pending_presence``); the write follows, and the debt is cleared only after
it succeeded. A redelivered event (the sender got a 503) finds the debt and pays it, and so does
the reconciliation timer when no redelivery comes.

"DND during a call" is an Omnichannel presence (``CCaaS_ModifyAgentPresence``): Enreach user
availability does not change during a call (the terminal state is separate, Enreach wiki), so the
app never writes an Enreach availability for a call and the agent's own availability is untouched.
After the call the saved Omnichannel presence comes back; with none saved (no presence row at the
call's start), the presence that the agent's Enreach availability maps to, else the configured
default (``PRESENCE_AFTER_CALL``): never DND for good.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from core import metrics
from core.schema import CALL_SYNC
from dataverse import DataverseClient, DataverseError
from dataverse import filters as f
from enreach import EnreachClient, EnreachError, EnreachEvent, EnreachUnavailable

from .mapping import PresenceMapping
from .state import MAX_ACTIVE_CALLS, AgentState, PresenceStore, Snapshot, StateUnavailable

__all__ = ["AFTER_CALL", "AgentMismatch", "Outcome", "PresenceSync", "RunReport", "UnknownAgent"]

log = logging.getLogger("presence_sync")
CACHE_SECONDS = 300.0  # known agents and presences
NEGATIVE_CACHE_SECONDS = 30.0  # unknown agents: a user mapped by sync_enreach_user_ids is served within a minute
STUCK_GRACE_SECONDS = 600.0  # an Omnichannel DND this recent may be the agent's own, its webhook still on the way
AFTER_CALL = "after-call"  # pending marker: the presence after a call with nothing saved (resolved when written)


class UnknownAgent(LookupError):
    """The event names a user the app cannot map (no Dataverse user with that Enreach id, or vice versa)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AgentMismatch(PermissionError):
    """The Dataverse webhook's body names another agent than the status row it is about (403)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Outcome:
    """What one event did (answered as JSON and logged as one line)."""

    action: str  # e.g. "mirrored", "echo dropped", "dnd set", "restored", "kept manual", "recorded", "completed"
    agent: str | None = None
    detail: str = ""


@dataclass
class RunReport:
    """One timer run (reconciliation or polling): counts, logged as one JSON line."""

    job: str
    agents: int = 0
    expired_calls: int = 0
    completed_writes: int = 0
    mirrored: int = 0
    baselined: int = 0
    unchanged: int = 0
    failed: int = 0
    stopped: str = ""  # why a run ended early (e.g. Enreach throttling): the rest waits for the next run
    details: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def function(self) -> str:
        """The timer function this run belongs to (the log line is named after it)."""
        return {"reconcile": "reconcile_presence", "poll": "sync_presence"}.get(self.job, f"presence_{self.job}")

    @property
    def outcome(self) -> str:
        return "partial" if self.failed or self.stopped else "ok"

    def line(self) -> str:
        data = {k: v for k, v in self.__dict__.items() if k not in ("details", "started")}
        outcome = self.outcome
        duration_ms = round((time.monotonic() - self.started) * 1000, 1)
        return json.dumps(
            {
                "event": self.function,
                "outcome": outcome,
                "duration_ms": duration_ms,
                **data,
                "details": self.details[:20],
            }
        )


def _agent_step(report: RunReport, agent: str, step: Callable[[], object]) -> bool:
    """One agent's part of a timer run: a failure is counted and the run goes on, except an Enreach
    outage or throttling, which ends the run (False): the rest waits for the next run."""
    try:
        step()
    except EnreachUnavailable as error:
        report.failed += 1
        report.stopped = f"Enreach unavailable ({error.status}): the rest waits for the next run"
        return False
    except (EnreachError, StateUnavailable, UnknownAgent, DataverseError) as error:
        report.failed += 1
        report.details.append(f"{agent}: {type(error).__name__}")
    return True


class _Cache:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._values: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, key: str, load: Callable[[], Any], *, negative_ttl: float = CACHE_SECONDS) -> Any:
        """The cached value, else ``load()``; a None result is kept only ``negative_ttl`` seconds."""
        with self._lock:
            hit = self._values.get(key)
            if hit and hit[0] > self._clock():
                return hit[1]
        value = load()
        with self._lock:
            if len(self._values) > 10_000:  # ids come from outside: bound the memory
                self._values.clear()
            self._values[key] = (self._clock() + (CACHE_SECONDS if value is not None else negative_ttl), value)
        return value


class PresenceSync:
    def __init__(
        self,
        *,
        dataverse: DataverseClient,
        enreach: EnreachClient,
        store: PresenceStore,
        mapping: PresenceMapping,
        echo_ttl_seconds: float = 30.0,
        max_call_minutes: float = 240.0,
        after_call_presence: str | None = None,
        negative_cache_seconds: float = NEGATIVE_CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dataverse = dataverse
        self._enreach = enreach
        self._store = store
        self._mapping = mapping
        self._echo_ttl = echo_ttl_seconds
        self._max_call_seconds = max_call_minutes * 60.0
        self._after_call = (after_call_presence or mapping.presence_ids["AVAILABLE"]).lower()
        self._negative_ttl = negative_cache_seconds
        self._clock = clock
        self._cache = _Cache(clock)
        self._status_agents: dict[str, str] = {}  # msdyn_agentstatus id -> agent (a row's agent never changes)

    def reconfigure(self, mapping: PresenceMapping, after_call_presence: str | None) -> None:
        """A new presence mapping and after-call presence (configuration rows) for the events from
        now on; what the instance has cached and the saved state stay."""
        self._mapping = mapping
        self._after_call = (after_call_presence or mapping.presence_ids["AVAILABLE"]).lower()

    # -- look-ups (cached per instance) ---------------------------------------------

    def _base_status(self, presence_id: str) -> int | None:
        def load() -> dict[str, int]:
            rows = self._dataverse.query("msdyn_presences", select=["msdyn_presenceid", "msdyn_basepresencestatus"])
            return {
                str(r["msdyn_presenceid"]).lower(): int(r["msdyn_basepresencestatus"])
                for r in rows
                if r.get("msdyn_basepresencestatus") is not None
            }

        presences: dict[str, int] = self._cache.get("presences", load)
        return presences.get(presence_id.lower())

    def _agent_for_enreach(self, enreach_id: str) -> str:
        def load() -> str | None:
            rows = list(
                self._dataverse.query(
                    "systemusers",
                    select=["systemuserid"],
                    filter=f.eq(CALL_SYNC.user_id_column, enreach_id),
                    top=2,
                )
            )
            return str(rows[0]["systemuserid"]).lower() if len(rows) == 1 else None

        agent: str | None = self._cache.get(f"agent:{enreach_id.lower()}", load, negative_ttl=self._negative_ttl)
        if agent is None:
            raise UnknownAgent(
                "UserId",
                f"no single Dataverse user has Enreach user id {enreach_id!r}: "
                "run sync_enreach_user_ids or check the user's Enreach e-mail",
            )
        return agent

    def _enreach_for_agent(self, agent: str) -> str:
        def load() -> str | None:
            row = self._dataverse.get("systemusers", agent, select=[CALL_SYNC.user_id_column])
            return str(row[CALL_SYNC.user_id_column]) if row and row.get(CALL_SYNC.user_id_column) else None

        enreach_id: str | None = self._cache.get(f"enreach:{agent}", load, negative_ttl=self._negative_ttl)
        if enreach_id is None:
            raise UnknownAgent("agent", f"Dataverse user {agent} has no Enreach user id: run sync_enreach_user_ids")
        return enreach_id

    def agent_of_status(self, agent_status_id: str) -> str | None:
        """The agent of an ``msdyn_agentstatus`` row, read from Dataverse (kept once known: a row's
        agent never changes), or None when there is no such row."""
        status_id = agent_status_id.lower()
        known = self._status_agents.get(status_id)
        if known is not None:
            return known
        row = self._dataverse.get("msdyn_agentstatuses", status_id, select=["_msdyn_agentid_value"])
        agent = str(row["_msdyn_agentid_value"]).lower() if row and row.get("_msdyn_agentid_value") else None
        if agent is not None:
            if len(self._status_agents) > 10_000:
                self._status_agents.clear()
            self._status_agents[status_id] = agent
        return agent

    def verified_agent(self, status_id: str, claimed: str | None) -> str:
        """The agent the webhook is about: the one on the status row ``PrimaryEntityId`` names; a body
        that names another agent is refused (``AgentMismatch``), with nothing written anywhere."""
        owner = self.agent_of_status(status_id)
        if owner is None:
            raise UnknownAgent("PrimaryEntityId", f"there is no msdyn_agentstatus {status_id} with an agent")
        if claimed is not None and claimed.lower() != owner:
            raise AgentMismatch(
                "msdyn_agentid",
                f"msdyn_agentid {claimed} is not the agent of msdyn_agentstatus {status_id} (PrimaryEntityId)",
            )
        return owner

    def current_presence(self, agent: str) -> str | None:
        rows = list(
            self._dataverse.query(
                "msdyn_agentstatuses",
                select=["_msdyn_currentpresenceid_value"],
                filter=f.eq("_msdyn_agentid_value", uuid.UUID(agent)),  # a GUID literal, unquoted
                top=1,
            )
        )
        value = rows[0].get("_msdyn_currentpresenceid_value") if rows else None
        return str(value).lower() if value else None

    # -- side effects (echo recorded first) -----------------------------------------

    def _set_omnichannel(self, agent: str, presence_id: str) -> None:
        self._store.expect_echo("oc", agent, presence_id, self._echo_ttl)
        self._dataverse.request(
            "POST",
            "CCaaS_ModifyAgentPresence",
            json={"ApiVersion": "1.0", "AgentId": agent, "PresenceId": presence_id},
            headers={"MSCRMCallerID": agent},  # as the agent: counts against the agent's limits
            idempotent=True,  # setting the same presence twice is harmless
        )
        metrics.presence_write("to_omnichannel")

    def _set_enreach(self, enreach_id: str, availability: str) -> None:
        """Start (or, for Available, end) the user's Enreach availability; the echo is expected first."""
        self._store.expect_echo("enreach", enreach_id, availability, self._echo_ttl)
        self._enreach.set_availability(enreach_id, availability)
        metrics.presence_write("to_enreach")

    def _after_call_target(self, agent: str) -> tuple[str, str]:
        """(presence, why) after a call with no saved presence: what the agent's Enreach availability
        maps to, else ``PRESENCE_AFTER_CALL``."""
        try:
            current = self._enreach.current_availability(self._enreach_for_agent(agent))
        except (EnreachError, UnknownAgent) as error:
            return self._after_call, f"the default (Enreach availability unreadable: {type(error).__name__})"
        presence = self._mapping.presence_for_enreach(current.name) if current.name else None
        if presence is None:
            return self._after_call, f"the default (Enreach availability {current.name or current.type_id} unmapped)"
        return presence, f"Enreach availability {current.name}"

    def _finish(self, agent: str, pending: str | None, snapshot: Snapshot | None = None) -> str:
        """Write the Omnichannel presence the state owes, then clear the debt (if it is still this one).

        Writes from several instances may land out of order: when a newer wish was already written
        and settled before ours landed, ours may have overwritten it, so the newer one is owed again
        (and written here): the last write to land is always the latest wish."""
        done = ""
        for _ in range(3):
            if pending is None:
                break
            target, why = (
                self._after_call_target(agent) if pending == AFTER_CALL else (pending, "the saved or wanted presence")
            )
            self._set_omnichannel(agent, target)
            done = f"presence {target} ({why})"
            pending, snapshot = self._store.update_from(
                agent, partial(self._settle, written=pending), snapshot=snapshot
            )
        return done

    @staticmethod
    def _settle(state: AgentState, *, written: str) -> str | None:
        """After ``written`` was written: the debt is paid, or a newer wish is owed again."""
        if state.pending_presence == written:
            state.pending_presence = None
            return None
        if state.pending_presence is None and state.wanted_presence not in (None, written):
            state.pending_presence = state.wanted_presence  # ours landed after a newer one
            return state.pending_presence
        return None  # another debt is outstanding: its writer (or a redelivery) pays it

    @staticmethod
    def _owe(state: AgentState, presence: str | None) -> None:
        state.pending_presence = presence
        if presence is not None:
            state.wanted_presence = presence

    # -- call bookkeeping (pure: run inside a state update, possibly more than once) -------

    def _expire(self, state: AgentState, now: float) -> list[str]:
        """Drop calls open longer than PRESENCE_MAX_CALL_MINUTES (their end was lost)."""
        old = [c for c, started in state.active_calls.items() if now - started > self._max_call_seconds]
        for call_id in old:
            del state.active_calls[call_id]
            state.ended_calls.append(call_id)
        return old

    def _repair(self, state: AgentState, now: float, dnd: str) -> tuple[list[str], str | None]:
        expired = self._expire(state, now)
        if expired and not state.in_call:
            self._close_period(state)
        elif not state.in_call and not state.pending_presence and state.wanted_presence not in (None, dnd):
            state.pending_presence = state.wanted_presence  # shown DND, wanted otherwise: owe it again
        return expired, state.pending_presence

    @staticmethod
    def _close_period(state: AgentState) -> str:
        """The last call is over: owe the saved presence back (unless the agent chose one meanwhile)."""
        saved, manual = state.saved_presence, state.manual_during_call
        state.saved_presence, state.manual_during_call = None, False
        if manual:
            state.pending_presence = None
            return "manual"
        PresenceSync._owe(state, saved or AFTER_CALL)
        return "restore"

    def _log_expired(self, agent: str, calls: list[str], result: str) -> None:
        if calls:
            log.warning(
                "%s",
                json.dumps(
                    {
                        "event": "presence_call_expired",
                        "agent": agent,
                        "calls": len(calls),
                        "max_call_minutes": self._max_call_seconds / 60,
                        "result": result,
                    }
                ),
            )

    # -- events ---------------------------------------------------------------------

    def on_omnichannel_change(self, agent: str, presence_id: str) -> Outcome:
        agent, presence_id = agent.lower(), presence_id.lower()
        if self._store.consume_echo("oc", agent, presence_id):
            metrics.presence_echo_dropped()
            return Outcome("echo dropped", agent, "our own Omnichannel change came back")
        base = self._base_status(presence_id)
        if base is None:
            raise UnknownAgent("msdyn_currentpresenceid", f"presence {presence_id} is not a known msdyn_presence")
        enreach_id = self._enreach_for_agent(agent)

        def note_manual(state: AgentState) -> bool:
            # The agent's own choice wins over any write still owed (a restore, a mirrored Enreach change),
            # whether or not it can be mirrored to Enreach.
            state.pending_presence, state.wanted_presence = None, presence_id
            if state.in_call:
                state.manual_during_call = True  # and over the restore at the call's end
                return True
            return False

        in_call, snapshot = self._store.update_from(agent, note_manual)
        by_hand = " (changed by hand during a call: kept after it)" if in_call else ""
        availability = self._mapping.enreach_availability(base)
        if availability is None:
            return Outcome("ignored", agent, f"base presence {base} is not mapped to an Enreach availability{by_hand}")
        if availability != "Available" and self._enreach.mapping.availability.type_id(availability) is None:
            return Outcome(
                "ignored",
                agent,
                f"Enreach availability {availability} has no EventTypeID: set "
                f"ENREACH_FIELD_MAP.availability.event_types.{availability}{by_hand}",
            )
        self._set_enreach(enreach_id, availability)

        def seen(state: AgentState) -> None:
            state.last_enreach = availability  # polling: Enreach has it now, not news

        self._store.update_from(agent, seen, snapshot=snapshot)
        return Outcome("mirrored", agent, f"Enreach availability {availability}{by_hand}")

    def on_enreach_event(self, event: EnreachEvent) -> Outcome:
        if event.kind == "availability":
            # The notification says that the availability changed; what it is now is read from
            # the API (the one place its shape is known), not guessed from the notification.
            current = self._enreach.current_availability(event.user_id)
            if current.name is None:
                return Outcome(
                    "ignored",
                    None,
                    f"Enreach EventTypeID {current.type_id} is not mapped: add it to "
                    "ENREACH_FIELD_MAP.availability.event_types",
                )
            agent = self._agent_for_enreach(event.user_id)
            return self._enreach_availability(agent, event.user_id, current.name)
        agent = self._agent_for_enreach(event.user_id)
        assert event.call_id is not None
        call_id = event.call_id
        if event.kind == "call_start":
            return self._call_started(agent, call_id)
        return self._call_ended(agent, call_id)

    def _enreach_availability(self, agent: str, enreach_id: str, name: str) -> Outcome:
        """The agent's Enreach availability is now ``name``: mirror it to Omnichannel (after the call
        when in one), unless it is the echo of our own change."""
        if self._store.consume_echo("enreach", enreach_id, name):
            self._store.update(agent, lambda state: setattr(state, "last_enreach", name))
            metrics.presence_echo_dropped()
            return Outcome("echo dropped", agent, "our own Enreach change came back")
        presence = self._mapping.presence_for_enreach(name)

        def apply(state: AgentState) -> tuple[bool, str | None]:
            state.last_enreach = name
            if presence is None:
                return False, state.pending_presence
            if state.in_call:
                state.saved_presence = presence  # applied when the last call ends
                return True, state.pending_presence
            self._owe(state, presence)
            return False, presence

        (in_call, pending), snapshot = self._store.update_from(agent, apply)
        if presence is None:
            return Outcome("ignored", agent, f"Enreach availability {name} is not mapped (PRESENCE_MAPPING)")
        if in_call:
            return Outcome("recorded", agent, "in a call: applied when the call ends")
        self._finish(agent, pending, snapshot)
        return Outcome("mirrored", agent, f"presence {presence}")

    def _call_started(self, agent: str, call_id: str) -> Outcome:
        current = self.current_presence(agent)
        dnd = self._mapping.dnd_presence
        now = self._clock()
        expired: list[str] = []

        def start(state: AgentState) -> tuple[str, str | None]:
            expired[:] = self._expire(state, now)
            if expired and not state.in_call:
                self._close_period(state)  # the stale calls end as a call end would, just before this one
            if call_id in state.ended_calls:
                return "late", state.pending_presence
            if call_id in state.active_calls:
                return "repeat", state.pending_presence
            first = not state.in_call
            state.active_calls[call_id] = now
            while len(state.active_calls) > MAX_ACTIVE_CALLS:  # bounded: the oldest open call is dropped
                oldest = min(state.active_calls, key=lambda c: state.active_calls[c])
                del state.active_calls[oldest]
                state.ended_calls.append(oldest)
            if not first:
                return "overlap", state.pending_presence
            # What the agent's presence is (or is owed to be) before this call: that is what comes back.
            before = state.pending_presence or current
            state.saved_presence = None if before == AFTER_CALL else before
            state.manual_during_call = False
            self._owe(state, dnd if before != dnd else None)
            state.wanted_presence = dnd
            return "first", state.pending_presence

        (result, pending), snapshot = self._store.update_from(agent, start)
        self._log_expired(agent, expired, "cut short by a new call")
        done = self._finish(agent, pending, snapshot)
        if result == "first":
            return Outcome("dnd set", agent, f"call {call_id}; saved presence {current}")
        if done:
            return Outcome("completed", agent, f"call {call_id}: {result} event finished an earlier write: {done}")
        return Outcome("recorded", agent, f"call {call_id}: {result} event")

    def _call_ended(self, agent: str, call_id: str) -> Outcome:
        now = self._clock()
        expired: list[str] = []

        def end(state: AgentState) -> tuple[str, str | None]:
            expired[:] = self._expire(state, now)
            if call_id not in state.ended_calls:
                state.ended_calls.append(call_id)
            if call_id in state.active_calls:
                del state.active_calls[call_id]
            elif not expired:
                return "unknown", state.pending_presence
            if state.in_call:
                return "others", state.pending_presence
            return self._close_period(state), state.pending_presence

        (result, pending), snapshot = self._store.update_from(agent, end)
        self._log_expired(agent, expired, result)
        done = self._finish(agent, pending, snapshot)
        if result == "restore":
            return Outcome("restored", agent, done)
        if result == "manual":
            return Outcome("kept manual", agent, "the agent changed presence during the call")
        if done:
            return Outcome("completed", agent, f"call {call_id}: {result}; finished an earlier write: {done}")
        return Outcome("recorded", agent, f"call {call_id}: {result}")

    # -- timers ---------------------------------------------------------------------

    def reconcile(self) -> RunReport:
        """Every agent with saved state, against what exists: calls open past PRESENCE_MAX_CALL_MINUTES
        end as a call end would; writes owed and never finished are done; and an Enreach availability
        that changed without a notification reaching us is mirrored. (Enreach has no public API for a
        user's call or terminal state, so an open call is checked only by its age.)"""
        report = RunReport("reconcile")
        now = self._clock()
        states = list(self._store.agents())
        dnd = self._mapping.dnd_presence
        # Agents the app last wanted out of DND: if Omnichannel shows DND all the same (a write lost in
        # a way no debt recorded), they are stuck, and what was wanted is written again.
        watch = {
            agent
            for agent, s in states
            if not s.in_call and not s.pending_presence and s.wanted_presence not in (None, dnd)
        }
        try:
            shown = self._current_presences(older_than=now - STUCK_GRACE_SECONDS) if watch else {}
        except DataverseError as error:
            report.failed += 1
            report.details.append(f"presences unreadable: {type(error).__name__}")
            shown = {}
        for agent, saved in states:
            report.agents += 1

            def check(agent: str = agent, saved: AgentState = saved) -> None:
                stuck = agent in watch and shown.get(agent) == dnd
                if (
                    stuck
                    or saved.pending_presence
                    or any(now - t > self._max_call_seconds for t in saved.active_calls.values())
                ):
                    (expired, pending), snapshot = self._store.update_from(
                        agent, lambda state: self._repair(state, now, dnd)
                    )
                    self._log_expired(agent, expired, "reconciliation")
                    report.expired_calls += len(expired)
                    if self._finish(agent, pending, snapshot):
                        report.completed_writes += 1
                    saved = self._store.read(agent)
                if not saved.in_call:
                    self._compare_availability(agent, saved, report)

            if not _agent_step(report, agent, check):
                break
        log.info("%s", report.line())
        return report

    def _current_presences(self, *, older_than: float) -> dict[str, str]:
        """Every agent's current Omnichannel presence set before ``older_than`` (epoch seconds), in one
        paged query of msdyn_agentstatuses."""
        found: dict[str, str] = {}
        for row in self._dataverse.query(
            "msdyn_agentstatuses",
            select=["_msdyn_agentid_value", "_msdyn_currentpresenceid_value", "msdyn_presencemodifiedon"],
        ):
            if not row.get("_msdyn_agentid_value") or not row.get("_msdyn_currentpresenceid_value"):
                continue
            try:
                changed = datetime.fromisoformat(str(row.get("msdyn_presencemodifiedon")).replace("Z", "+00:00"))
                recent = (changed if changed.tzinfo else changed.replace(tzinfo=UTC)).timestamp() > older_than
            except ValueError:
                recent = False
            if not recent:
                found[str(row["_msdyn_agentid_value"]).lower()] = str(row["_msdyn_currentpresenceid_value"]).lower()
        return found

    def poll(self, *, pause_seconds: float = 0.2) -> RunReport:
        """The polling fallback (``sync_presence``): each mapped agent's current Enreach availability,
        one request per user (Enreach has no public bulk read) paced by ``pause_seconds``; a change since
        the last one seen is mirrored to Omnichannel with the same echo suppression as a notification.
        The first sight of an agent only records the baseline."""
        report = RunReport("poll")
        states = dict(self._store.agents())
        for agent, enreach_id in self._mapped_agents():
            report.agents += 1
            saved = states.get(agent, AgentState())
            step = partial(self._compare_availability, agent, saved, report, enreach_id=enreach_id)
            if not _agent_step(report, agent, step):
                break
            if pause_seconds:
                time.sleep(pause_seconds)
        log.info("%s", report.line())
        return report

    def _mapped_agents(self) -> Iterator[tuple[str, str]]:
        for row in self._dataverse.query(
            "systemusers",
            select=["systemuserid", CALL_SYNC.user_id_column],
            filter=f.and_(f.ne(CALL_SYNC.user_id_column, None), f.eq("isdisabled", False)),
        ):
            if row.get(CALL_SYNC.user_id_column):
                yield str(row["systemuserid"]).lower(), str(row[CALL_SYNC.user_id_column])

    def _compare_availability(
        self, agent: str, state: AgentState, report: RunReport, *, enreach_id: str | None = None
    ) -> None:
        enreach_id = enreach_id or self._enreach_for_agent(agent)
        current = self._enreach.current_availability(enreach_id)
        if current.name is None:
            report.unchanged += 1  # an EventTypeID the mapping does not know: nothing to mirror
            return
        if state.last_enreach is None:
            self._store.update(agent, lambda s: setattr(s, "last_enreach", s.last_enreach or current.name))
            report.baselined += 1
            return
        if state.last_enreach == current.name:
            report.unchanged += 1
            return
        outcome = self._enreach_availability(agent, enreach_id, current.name)
        report.mirrored += 1
        report.details.append(f"{agent}: {outcome.action} ({current.name})")
