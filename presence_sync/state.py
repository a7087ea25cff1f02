"""Durable, shared presence state in Azure Table Storage: per-agent call state and expected echoes.

Several instances handle events for the same agent; every change is a read-modify-write
with the entity's ETag, retried on conflict, so no update is lost.

An event's effect is recorded together with the Omnichannel write it owes (``pending_presence``);
the write is done after the state is saved and cleared only once it succeeded, so a redelivered
event, or the reconciliation timer, finishes a write that failed or was cut short.

Every key is made safe for Table Storage (``storage_key``): ids from outside (an Enreach user id
with ``/`` or a lone surrogate) never reach a PartitionKey/RowKey as they are.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.state import TableStore
from core.storage_config import StorageConfig

__all__ = [
    "MAX_ACTIVE_CALLS",
    "MAX_ENDED",
    "AgentState",
    "PresenceStore",
    "Snapshot",
    "StateUnavailable",
    "storage_key",
]

T = TypeVar("T")
# Ended call ids are remembered (late and repeated events of these are ignored) for as long as an open
# call is kept (``keep_ended_seconds``, PRESENCE_MAX_CALL_MINUTES), at most MAX_ENDED of them: a call
# every 36 s for 4 hours, ~25 KB in the row (a Table Storage string property holds 64 KiB).
MAX_ENDED = 400
ENDED_CHARACTERS = 28_000
MAX_ACTIVE_CALLS = 20  # open calls kept per agent; the oldest is dropped beyond that
_SAFE_KEY = re.compile(r"[A-Za-z0-9._-]{1,200}")
# A storage client that fails fast: the webhook must answer within Enreach's 5 s, and a sender
# retries a 503 anyway (no long retry chains inside one request).
STORAGE_OPTIONS: dict[str, Any] = {
    "retry_total": 1,
    "retry_backoff_factor": 0.2,
    "connection_timeout": 2,
    "read_timeout": 4,
}


class StateUnavailable(Exception):
    """Table Storage failed or kept changing under an update: answer 503, the sender retries."""


def storage_key(text: str) -> str:
    """A valid PartitionKey/RowKey for any text: short plain ids as they are, everything else hashed
    (``~`` + SHA-256, a character plain keys never carry, so the two kinds never collide)."""
    if _SAFE_KEY.fullmatch(text):
        return text
    return "~" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class AgentState:
    """One agent's presence state. ``active_calls`` maps each open call id to when it started
    (epoch seconds); ``bool(state.active_calls)`` is "in a call"."""

    active_calls: dict[str, float] = field(default_factory=dict)
    ended_calls: dict[str, float] = field(default_factory=dict)  # call id -> when it ended; late events ignored
    saved_presence: str | None = None  # what to restore after the last call
    manual_during_call: bool = False
    pending_presence: str | None = None  # the Omnichannel presence owed (written, then cleared)
    wanted_presence: str | None = None  # the latest presence the app or the agent wanted (kept after the write)
    last_enreach: str | None = None  # the Enreach availability last seen or set (polling compares with it)
    own_availability: str | None = None  # the Id of the one Enreach availability the app started (at most one)
    under_own: str | None = None  # the agent's own Enreach availability it was started on top of

    @property
    def in_call(self) -> bool:
        return bool(self.active_calls)


@dataclass(frozen=True)
class Snapshot:
    """A state as written, with the ETag the write got (None: unknown, read the row again)."""

    state: AgentState
    etag: str | None


def _calls(text: Any) -> dict[str, float]:
    value = json.loads(text or "{}")
    if isinstance(value, list):  # rows written before calls had times (start or end): count them from now
        return {str(c): time.time() for c in value}
    return {str(k): float(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _kept(ended: dict[str, float], keep_seconds: float) -> dict[str, float]:
    """The ended calls still worth remembering: younger than ``keep_seconds``, the newest MAX_ENDED,
    and no more than fit in one Table Storage property (64 KiB: ~28,000 characters kept)."""
    oldest, room = time.time() - keep_seconds, ENDED_CHARACTERS
    kept: list[tuple[str, float]] = []
    for moment, call_id in sorted(((t, c) for c, t in ended.items() if t >= oldest), reverse=True):
        room -= len(call_id) + 24  # "id": 1765000000.123456, as JSON
        if room < 0 or len(kept) >= MAX_ENDED:
            break
        kept.append((call_id, moment))
    return dict(reversed(kept))


class PresenceStore(TableStore):
    def __init__(
        self,
        storage: StorageConfig | str,
        *,
        table_name: str = "bridgepresence",
        keep_ended_seconds: float = 4 * 3600.0,
        **options: Any,
    ) -> None:
        super().__init__(storage, table_name=table_name, **{**STORAGE_OPTIONS, **options})
        self._keep_ended = keep_ended_seconds

    def _open(self) -> Any:
        from azure.core.exceptions import AzureError

        try:
            return self._client()
        except AzureError as error:
            raise StateUnavailable(f"Table Storage: {type(error).__name__}") from error

    # -- agent state ----------------------------------------------------------------

    def read(self, agent: str) -> AgentState:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            entity = self._open().get_entity("agent", storage_key(agent))
        except ResourceNotFoundError:
            return AgentState()
        except AzureError as error:
            raise StateUnavailable(f"Table Storage: {type(error).__name__}") from error
        return self._state(entity)

    def agents(self) -> Iterator[tuple[str, AgentState]]:
        """Every agent with saved state: (agent id, state)."""
        from azure.core.exceptions import AzureError

        try:
            for entity in self._open().query_entities("PartitionKey eq 'agent'"):
                yield str(entity.get("Agent") or entity["RowKey"]), self._state(entity)
        except AzureError as error:
            raise StateUnavailable(f"Table Storage: {type(error).__name__}") from error

    @staticmethod
    def _state(entity: Any) -> AgentState:
        return AgentState(
            active_calls=_calls(entity.get("ActiveCalls")),
            ended_calls=_calls(entity.get("EndedCalls") or "{}"),
            saved_presence=entity.get("SavedPresence") or None,
            manual_during_call=bool(entity.get("ManualDuringCall")),
            pending_presence=entity.get("PendingPresence") or None,
            wanted_presence=entity.get("WantedPresence") or None,
            last_enreach=entity.get("LastEnreach") or None,
            own_availability=entity.get("OwnAvailability") or None,
            under_own=entity.get("UnderOwn") or None,
        )

    def update(self, agent: str, change: Callable[[AgentState], T], *, attempts: int = 8) -> T:
        """Apply ``change`` to the agent's state atomically (optimistic concurrency); return its result."""
        return self.update_from(agent, change, attempts=attempts)[0]

    def update_from(
        self,
        agent: str,
        change: Callable[[AgentState], T],
        *,
        snapshot: Snapshot | None = None,
        attempts: int = 8,
    ) -> tuple[T, Snapshot]:
        """``update``, starting from ``snapshot`` (the state and ETag this instance wrote last) instead of
        reading the row: one round trip when nobody changed it since, a read and retry when someone did.
        Returns the result and the snapshot of what was written."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        table = self._open()
        key = storage_key(agent)
        for _ in range(attempts):
            try:
                if snapshot is not None and snapshot.etag is not None:
                    state, etag, snapshot = copy.deepcopy(snapshot.state), snapshot.etag, None
                else:
                    snapshot = None
                    try:
                        entity = table.get_entity("agent", key)
                        state, etag = self._state(entity), entity.metadata["etag"]
                    except ResourceNotFoundError:
                        state, etag = AgentState(), None
                result = change(state)
                state.ended_calls = _kept(state.ended_calls, self._keep_ended)
                row = {
                    "PartitionKey": "agent",
                    "RowKey": key,
                    "Agent": agent,
                    "ActiveCalls": json.dumps(state.active_calls),
                    "EndedCalls": json.dumps(state.ended_calls),
                    "SavedPresence": state.saved_presence or "",
                    "ManualDuringCall": state.manual_during_call,
                    "PendingPresence": state.pending_presence or "",
                    "WantedPresence": state.wanted_presence or "",
                    "LastEnreach": state.last_enreach or "",
                    "OwnAvailability": state.own_availability or "",
                    "UnderOwn": state.under_own or "",
                }
                if etag is None:
                    metadata = table.create_entity(row)
                else:
                    metadata = table.update_entity(
                        row, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
                return result, Snapshot(state, metadata.get("etag") if isinstance(metadata, dict) else None)
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                time.sleep(0.01)  # changed (or gone, the table created again) meanwhile: read it again
            except AzureError as error:
                raise StateUnavailable(f"Table Storage: {type(error).__name__}") from error
        raise StateUnavailable(f"presence state of agent {agent} kept changing under this update")

    # -- expected echoes -----------------------------------------------------------

    def expect_echo(self, side: str, subject: str, value: str, ttl_seconds: float) -> None:
        """We are about to set ``value`` on ``side``: its notification coming back is not news."""
        from azure.core.exceptions import AzureError

        try:
            self._open().upsert_entity(
                {
                    "PartitionKey": f"echo-{side}",
                    "RowKey": storage_key(f"{subject}|{value}"),
                    "ExpiresAt": time.time() + ttl_seconds,
                }
            )
        except AzureError as error:
            raise StateUnavailable(f"Table Storage: {type(error).__name__}") from error

    def expect_change(self, side: str, subject: str, values: Iterable[str], ttl_seconds: float) -> None:
        """We are about to change ``subject`` on ``side`` with several writes: every notification
        that shows one of ``values`` within ``ttl_seconds`` is this change's echo (not once: all of
        them), until one shows something else (news: the echo is over)."""
        from azure.core.exceptions import AzureError

        try:
            self._open().upsert_entity(
                {
                    "PartitionKey": f"change-{side}",
                    "RowKey": storage_key(subject),
                    "Values": json.dumps(sorted(set(values))),
                    "ExpiresAt": time.time() + ttl_seconds,
                }
            )
        except AzureError as error:
            raise StateUnavailable(f"Table Storage: {type(error).__name__}") from error

    def is_change_echo(self, side: str, subject: str, value: str) -> bool:
        """True while ``value`` is what our last change of ``subject`` led to (``expect_change``)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        table = self._open()
        try:
            try:
                entity = table.get_entity(f"change-{side}", storage_key(subject))
            except ResourceNotFoundError:
                return False
            if float(entity.get("ExpiresAt", 0)) < time.time():
                return False
            if value in json.loads(entity.get("Values") or "[]"):
                return True
            try:  # something else is shown: news, and later notifications are news too
                table.delete_entity(entity, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
            except (ResourceNotFoundError, ResourceModifiedError):
                pass
        except AzureError as error:
            raise StateUnavailable(f"Table Storage: {type(error).__name__}") from error
        return False

    def consume_echo(self, side: str, subject: str, value: str) -> bool:
        """True (once) if this notification is the echo of our own change."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        table = self._open()
        try:
            try:
                entity = table.get_entity(f"echo-{side}", storage_key(f"{subject}|{value}"))
            except ResourceNotFoundError:
                return False
            try:
                table.delete_entity(entity, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified)
            except (ResourceNotFoundError, ResourceModifiedError):
                return False  # another instance consumed it
        except AzureError as error:
            raise StateUnavailable(f"Table Storage: {type(error).__name__}") from error
        return float(entity.get("ExpiresAt", 0)) >= time.time()
