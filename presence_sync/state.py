"""Durable, shared presence state in Azure Table Storage: per-agent call state and expected echoes.

Several instances handle events for the same agent; every change is a read-modify-write
with the entity's ETag, retried on conflict, so no update is lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.state import TableStore

__all__ = ["AgentState", "PresenceStore"]

T = TypeVar("T")
MAX_ENDED = 50


@dataclass
class AgentState:
    active_calls: list[str] = field(default_factory=list)
    ended_calls: list[str] = field(default_factory=list)  # late or repeated events of these are ignored
    saved_presence: str | None = None  # what to restore after the last call
    manual_during_call: bool = False


class PresenceStore(TableStore):
    def __init__(self, connection_string: str, *, table_name: str = "bridgepresence") -> None:
        super().__init__(connection_string, table_name=table_name)

    # -- agent state ----------------------------------------------------------------

    def read(self, agent: str) -> AgentState:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._client().get_entity("agent", agent)
        except ResourceNotFoundError:
            return AgentState()
        return self._state(entity)

    @staticmethod
    def _state(entity: Any) -> AgentState:
        return AgentState(
            active_calls=json.loads(entity.get("ActiveCalls") or "[]"),
            ended_calls=json.loads(entity.get("EndedCalls") or "[]"),
            saved_presence=entity.get("SavedPresence") or None,
            manual_during_call=bool(entity.get("ManualDuringCall")),
        )

    def update(self, agent: str, change: Callable[[AgentState], T], *, attempts: int = 8) -> T:
        """Apply ``change`` to the agent's state atomically (optimistic concurrency); return its result."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = self._client()
        for _ in range(attempts):
            try:
                entity = table.get_entity("agent", agent)
                state, etag = self._state(entity), entity.metadata["etag"]
            except ResourceNotFoundError:
                state, etag = AgentState(), None
            result = change(state)
            state.ended_calls = state.ended_calls[-MAX_ENDED:]
            row = {
                "PartitionKey": "agent",
                "RowKey": agent,
                "ActiveCalls": json.dumps(state.active_calls),
                "EndedCalls": json.dumps(state.ended_calls),
                "SavedPresence": state.saved_presence or "",
                "ManualDuringCall": state.manual_during_call,
            }
            try:
                if etag is None:
                    table.create_entity(row)
                else:
                    table.update_entity(
                        row, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
                return result
            except (ResourceExistsError, ResourceModifiedError):
                time.sleep(0.01)
        raise RuntimeError(f"presence state of agent {agent} kept changing under this update")

    # -- expected echoes -----------------------------------------------------------

    def expect_echo(self, side: str, subject: str, value: str, ttl_seconds: float) -> None:
        """We are about to set ``value`` on ``side``: its notification coming back is not news."""
        self._client().upsert_entity(
            {
                "PartitionKey": f"echo-{side}",
                "RowKey": f"{subject}|{value}",
                "ExpiresAt": time.time() + ttl_seconds,
            }
        )

    def consume_echo(self, side: str, subject: str, value: str) -> bool:
        """True (once) if this notification is the echo of our own change."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        table = self._client()
        try:
            entity = table.get_entity(f"echo-{side}", f"{subject}|{value}")
        except ResourceNotFoundError:
            return False
        try:
            table.delete_entity(entity, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            return False  # another instance consumed it
        return float(entity.get("ExpiresAt", 0)) >= time.time()
