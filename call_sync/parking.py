"""Parked calls: calls whose Enreach user has no Dataverse user yet, kept in Table Storage.

A call is parked (one row, keyed by its call key) instead of skipped, so the checkpoint can
move on without losing it. Every run retries the parked calls; one that still has no owner
after ``CALL_SYNC_PARK_DAYS`` is marked expired and reported (``python -m call_sync status``
lists it); expired rows are removed ``EXPIRED_KEPT_DAYS`` later, or at once when the call is
synced after all (a backfill once the user is mapped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from core.state import TableStore
from core.storage_config import StorageConfig
from enreach import EnreachCall

__all__ = ["EXPIRED_KEPT_DAYS", "ParkedCall", "ParkedCalls", "call_from_json", "call_to_json"]

PARTITION = "phone_calls"
EXPIRED_KEPT_DAYS = 30


def call_to_json(call: EnreachCall) -> str:
    """Every attribute of the call (whatever the Enreach client reads), datetimes as ISO text."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(call):
        value = getattr(call, item.name)
        values[item.name] = {"$dt": value.isoformat()} if isinstance(value, datetime) else value
    return json.dumps(values, separators=(",", ":"))


def call_from_json(text: str) -> EnreachCall:
    values = json.loads(text)
    known = {item.name for item in dataclasses.fields(EnreachCall)}
    decoded: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            continue  # an attribute a newer or older client version had
        if isinstance(value, dict) and "$dt" in value:
            value = datetime.fromisoformat(value["$dt"])
        elif isinstance(value, list):
            value = tuple(value)
        decoded[name] = value
    return EnreachCall(**decoded)


def _row_key(key: str) -> str:
    # RowKey may not hold / \ # ? or control characters
    return quote(key, safe=" !$&'()*+,-.:;=@[]^_`{|}~")


@dataclass(frozen=True)
class ParkedCall:
    key: str
    call: EnreachCall
    parked_at: datetime
    reason: str
    expired_at: datetime | None = None


class ParkedCalls(TableStore):
    def __init__(self, storage: StorageConfig | str, *, table_name: str = "bridgeparkedcalls", **options: Any) -> None:
        super().__init__(storage, table_name=table_name, **options)

    def park(self, key: str, call: EnreachCall, reason: str, now: datetime) -> bool:
        """Keep the call; True if newly parked (a call parked before keeps its first time)."""
        from azure.core.exceptions import ResourceExistsError

        entity = {
            "PartitionKey": PARTITION,
            "RowKey": _row_key(key),
            "CallKey": key,
            "Call": call_to_json(call),
            "ParkedAt": now.astimezone(UTC).isoformat(),
            "Reason": reason,
            "State": "parked",
        }
        try:
            self._client().create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    def all(self) -> list[ParkedCall]:
        """Every parked call, waiting or expired."""
        rows = self._client().query_entities(f"PartitionKey eq '{PARTITION}'")
        result = []
        for row in rows:
            expired = row.get("ExpiredAt")
            result.append(
                ParkedCall(
                    key=str(row["CallKey"]),
                    call=call_from_json(str(row["Call"])),
                    parked_at=datetime.fromisoformat(str(row["ParkedAt"])),
                    reason=str(row.get("Reason") or ""),
                    expired_at=datetime.fromisoformat(str(expired)) if expired else None,
                )
            )
        return result

    def waiting(self) -> list[ParkedCall]:
        return [p for p in self.all() if p.expired_at is None]

    def expired(self) -> list[ParkedCall]:
        return [p for p in self.all() if p.expired_at is not None]

    def expire(self, key: str, now: datetime) -> None:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import UpdateMode

        with contextlib.suppress(ResourceNotFoundError):  # released by a racing run meanwhile
            self._client().update_entity(
                {
                    "PartitionKey": PARTITION,
                    "RowKey": _row_key(key),
                    "State": "expired",
                    "ExpiredAt": now.astimezone(UTC).isoformat(),
                },
                mode=UpdateMode.MERGE,
            )

    def release(self, keys: Iterable[str]) -> None:
        """Forget these calls (synced, or no longer to be synced); unknown keys are fine."""
        for key in keys:
            self._client().delete_entity(PARTITION, _row_key(key))

    def purge_expired(self, now: datetime) -> int:
        old = [p.key for p in self.expired() if p.expired_at and now - p.expired_at > timedelta(EXPIRED_KEPT_DAYS)]
        self.release(old)
        return len(old)
