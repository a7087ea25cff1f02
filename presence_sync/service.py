"""Presence sync decisions: Omnichannel <-> Enreach mirroring, DND during calls, no echo loops."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.schema import CALL_SYNC
from dataverse import DataverseClient
from dataverse import filters as f
from enreach import EnreachClient, EnreachEvent

from .mapping import PresenceMapping
from .state import AgentState, PresenceStore

__all__ = ["Outcome", "PresenceSync", "UnknownAgent"]

log = logging.getLogger("presence_sync")
CACHE_SECONDS = 300.0


class UnknownAgent(LookupError):
    """The event names a user the app cannot map (no Dataverse user with that Enreach id, or vice versa)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Outcome:
    """What one event did (answered as JSON and logged as one line)."""

    action: str  # e.g. "mirrored", "echo dropped", "dnd set", "restored", "kept manual", "recorded"
    agent: str | None = None
    detail: str = ""


class _Cache:
    def __init__(self) -> None:
        self._values: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._values.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
        value = load()
        with self._lock:
            self._values[key] = (time.monotonic() + CACHE_SECONDS, value)
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
    ) -> None:
        self._dataverse = dataverse
        self._enreach = enreach
        self._store = store
        self._mapping = mapping
        self._echo_ttl = echo_ttl_seconds
        self._cache = _Cache()

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

        agent: str | None = self._cache.get(f"agent:{enreach_id.lower()}", load)
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

        enreach_id: str | None = self._cache.get(f"enreach:{agent}", load)
        if enreach_id is None:
            raise UnknownAgent("agent", f"Dataverse user {agent} has no Enreach user id: run sync_enreach_user_ids")
        return enreach_id

    def agent_of_status(self, agent_status_id: str) -> str | None:
        row = self._dataverse.get("msdyn_agentstatuses", agent_status_id, select=["_msdyn_agentid_value"])
        return str(row["_msdyn_agentid_value"]).lower() if row and row.get("_msdyn_agentid_value") else None

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

    def _set_enreach(self, enreach_id: str, availability: str) -> None:
        """Start (or, for Available, end) the user's Enreach availability; the echo is expected first."""
        self._store.expect_echo("enreach", enreach_id, availability, self._echo_ttl)
        self._enreach.set_availability(enreach_id, availability)

    # -- events ---------------------------------------------------------------------

    def on_omnichannel_change(self, agent: str, presence_id: str) -> Outcome:
        agent, presence_id = agent.lower(), presence_id.lower()
        if self._store.consume_echo("oc", agent, presence_id):
            return Outcome("echo dropped", agent, "our own Omnichannel change came back")
        base = self._base_status(presence_id)
        if base is None:
            raise UnknownAgent("msdyn_currentpresenceid", f"presence {presence_id} is not a known msdyn_presence")
        availability = self._mapping.enreach_availability(base)
        if availability is None:
            return Outcome("ignored", agent, f"base presence {base} is not mapped to an Enreach availability")
        if availability != "Available" and self._enreach.mapping.availability.type_id(availability) is None:
            return Outcome(
                "ignored",
                agent,
                f"Enreach availability {availability} has no EventTypeID: set "
                f"ENREACH_FIELD_MAP.availability.event_types.{availability}",
            )

        def note_manual(state: AgentState) -> bool:
            if state.active_calls:
                state.manual_during_call = True
                return True
            return False

        in_call = self._store.update(agent, note_manual)
        self._set_enreach(self._enreach_for_agent(agent), availability)
        return Outcome(
            "mirrored",
            agent,
            f"Enreach availability {availability}" + (" (changed by hand during a call)" if in_call else ""),
        )

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
            if self._store.consume_echo("enreach", event.user_id, current.name):
                return Outcome("echo dropped", None, "our own Enreach change came back")
            agent = self._agent_for_enreach(event.user_id)
            presence = self._mapping.presence_for_enreach(current.name)
            if presence is None:
                return Outcome(
                    "ignored", agent, f"Enreach availability {current.name} is not mapped (PRESENCE_MAPPING)"
                )

            def remember_if_in_call(state: AgentState) -> bool:
                if state.active_calls:
                    state.saved_presence = presence  # applied when the last call ends
                    return True
                return False

            if self._store.update(agent, remember_if_in_call):
                return Outcome("recorded", agent, "in a call: applied when the call ends")
            self._set_omnichannel(agent, presence)
            return Outcome("mirrored", agent, f"presence {presence}")
        agent = self._agent_for_enreach(event.user_id)
        assert event.call_id is not None
        call_id = event.call_id
        if event.kind == "call_start":
            return self._call_started(agent, call_id)
        return self._call_ended(agent, call_id)

    def _call_started(self, agent: str, call_id: str) -> Outcome:
        current = self.current_presence(agent)

        def start(state: AgentState) -> str:
            if call_id in state.ended_calls:
                return "late"
            if call_id in state.active_calls:
                return "repeat"
            first = not state.active_calls
            state.active_calls.append(call_id)
            if first:
                state.saved_presence = current
                state.manual_during_call = False
                return "first"
            return "overlap"

        result = self._store.update(agent, start)
        if result == "first":
            if current != self._mapping.dnd_presence:
                self._set_omnichannel(agent, self._mapping.dnd_presence)
            return Outcome("dnd set", agent, f"call {call_id}; saved presence {current}")
        return Outcome("recorded", agent, f"call {call_id}: {result} event")

    def _call_ended(self, agent: str, call_id: str) -> Outcome:
        def end(state: AgentState) -> tuple[str, str | None]:
            if call_id not in state.ended_calls:
                state.ended_calls.append(call_id)
            if call_id not in state.active_calls:
                return "unknown", None
            state.active_calls.remove(call_id)
            if state.active_calls:
                return "others", None
            saved, manual = state.saved_presence, state.manual_during_call
            state.saved_presence, state.manual_during_call = None, False
            return ("manual", None) if manual else ("restore", saved)

        result, restore_to = self._store.update(agent, end)
        if result == "restore" and restore_to:
            if restore_to != self._mapping.dnd_presence:  # the agent was DND already: nothing to undo
                self._set_omnichannel(agent, restore_to)
            return Outcome("restored", agent, f"presence {restore_to}")
        if result == "manual":
            return Outcome("kept manual", agent, "the agent changed presence during the call")
        return Outcome("recorded", agent, f"call {call_id}: {result}")
