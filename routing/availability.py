"""Is a user free to take a routed call? (``require_available`` on owner, open_case and last_agent rules)

A user is available when their Enreach availability is not DND or OffWork and, when their
Omnichannel presence is known, it is not Offline or DND. A deployment without Enreach
(``BRIDGE_JOBS=routing``) decides on Omnichannel presence alone: known and not Offline or DND.
The Enreach side comes from the
presence state the app keeps in Table Storage (a user in a call has DND set by the presence
sync), else from one Enreach read (``read_enreach_status``, the one place that knows how).
Omnichannel presence comes from the user's ``msdyn_agentstatus`` row; both are read at once,
and no longer than the routing budget. When it cannot be told in time the answer is unknown,
and routing treats unknown as not available (the rule falls through to the next one).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from dataverse import DataverseClient, DataverseError
from dataverse import filters as f
from enreach import STOPS_QUEUE_CALLS, CurrentAvailability

if TYPE_CHECKING:
    from enreach import EnreachClient
    from presence_sync.state import PresenceStore

__all__ = [
    "OMNICHANNEL_UNAVAILABLE",
    "Availability",
    "AvailabilitySource",
    "PresenceAvailability",
    "read_enreach_status",
]

T = TypeVar("T")

# Omnichannel base presence statuses that stop calls (msdyn_basepresencestatus)
OMNICHANNEL_UNAVAILABLE = {192360002: "Busy - DND", 192360004: "Offline"}
OMNICHANNEL_AVAILABLE = {192360000: "Available", 192360001: "Busy", 192360003: "Away"}
NO_OMNICHANNEL_RECHECK_SECONDS = 600.0  # an environment without Omnichannel is asked again after this


@dataclass(frozen=True)
class Availability:
    available: bool | None  # None: could not be told
    reason: str


class AvailabilitySource(Protocol):
    """What the router asks; anything with this method will do (tests, other presence stores)."""

    def is_available(self, systemuserid: str, enreach_id: str | None, *, deadline: float) -> Availability: ...


def read_enreach_status(client: EnreachClient, enreach_id: str) -> CurrentAvailability:
    """The user's current Enreach availability (``GET users/<id>/availability/current``; none
    active is Available; ``name`` is None for an EventTypeID the mapping does not know)."""
    return client.current_availability(enreach_id)


class PresenceAvailability:
    """Availability from the presence state (Table Storage), Enreach and Omnichannel presence.

    Reads run on a small bounded pool; beyond ``max_in_flight`` pending checks the answer is
    unknown at once rather than a growing queue."""

    def __init__(
        self,
        *,
        store: PresenceStore | None,
        enreach: Callable[[str], CurrentAvailability] | None,
        dataverse: DataverseClient | None,
        max_in_flight: int = 32,
    ) -> None:
        self._store = store
        self._enreach = enreach
        self._dataverse = dataverse
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="routing-availability")
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._no_omnichannel_until = 0.0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, work: Callable[[], T]) -> Future[T] | None:
        if not self._slots.acquire(blocking=False):
            return None

        def run() -> T:
            try:
                return work()
            finally:
                self._slots.release()

        return self._pool.submit(run)

    @staticmethod
    def _wait(future: Future[T] | None, deadline: float) -> tuple[T | None, str | None]:
        if future is None:
            return None, "too many availability checks at once"
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic())), None
        except FutureTimeout:
            return None, "no answer within the routing budget"
        except Exception as error:
            return None, f"{type(error).__name__}: {str(error)[:120]}"

    def is_available(self, systemuserid: str, enreach_id: str | None, *, deadline: float) -> Availability:
        asks_omnichannel = self._dataverse is not None and time.monotonic() >= self._no_omnichannel_until
        omnichannel = self._submit(lambda: self._omnichannel(systemuserid, deadline)) if asks_omnichannel else None
        enreach = self._submit(lambda: self._enreach_side(systemuserid, enreach_id))
        presence, _ = self._wait(omnichannel, deadline) if omnichannel is not None else (None, None)
        if presence in OMNICHANNEL_UNAVAILABLE:
            return Availability(False, f"Omnichannel presence is {OMNICHANNEL_UNAVAILABLE[presence]}")
        waited = self._wait(enreach, deadline)
        if self._enreach is None and waited[0] is not None and waited[0].available is not False:
            # No Enreach in this deployment (BRIDGE_JOBS without an Enreach job): Omnichannel decides.
            if presence is None:
                return Availability(None, "no Omnichannel presence and no Enreach configured")
            name = OMNICHANNEL_AVAILABLE.get(presence, f"base status {presence}")
            return Availability(True, f"Omnichannel presence is {name} (no Enreach configured)")
        if waited[0] is None:
            return Availability(None, f"Enreach availability unknown: {waited[1]}")
        return waited[0]

    def _omnichannel(self, systemuserid: str, deadline: float) -> int | None:
        """The base status of the user's current Omnichannel presence; None without a row."""
        assert self._dataverse is not None
        try:
            page = self._dataverse.query_page(
                "msdyn_agentstatuses",
                select=["_msdyn_currentpresenceid_value"],
                filter=f.eq("_msdyn_agentid_value", uuid.UUID(systemuserid)),  # a GUID literal, unquoted
                expand="msdyn_currentpresenceid($select=msdyn_basepresencestatus)",
                top=1,
                deadline=deadline,
            )
        except DataverseError as error:
            if error.status in (400, 404):  # no Omnichannel in this environment: stop asking for a while
                self._no_omnichannel_until = time.monotonic() + NO_OMNICHANNEL_RECHECK_SECONDS
            raise
        for row in page.records:
            presence = row.get("msdyn_currentpresenceid")
            if isinstance(presence, dict) and isinstance(presence.get("msdyn_basepresencestatus"), int):
                return int(presence["msdyn_basepresencestatus"])
        return None

    def _enreach_side(self, systemuserid: str, enreach_id: str | None) -> Availability:
        if self._store is not None:
            try:
                in_call = self._store.read(systemuserid.lower()).in_call
            except Exception:  # the state is a shortcut: without it, Enreach is asked
                in_call = False
            if in_call:
                return Availability(False, "in a call (the presence sync set DND)")
        if not enreach_id:
            return Availability(None, "the user has no Enreach user id (run sync_enreach_user_ids)")
        if self._enreach is None:
            return Availability(None, "no Enreach client configured")
        current = self._enreach(enreach_id)
        if current.name is None:
            return Availability(
                None,
                f"Enreach availability is EventTypeID {current.type_id} "
                "(not in ENREACH_FIELD_MAP.availability.event_types)",
            )
        if current.name in STOPS_QUEUE_CALLS:
            return Availability(False, f"Enreach availability is {current.name}")
        return Availability(True, f"Enreach availability is {current.name}")
