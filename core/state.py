"""Durable state in Azure Table Storage (``AzureWebJobsStorage``): checkpoints with optimistic concurrency.

The stores take the storage settings (``core.storage_config.StorageConfig``: a connection string, or
identity-based storage with the managed identity) or a plain connection string (Azurite, tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .storage_config import StorageConfig, table_service

__all__ = ["Checkpoint", "CheckpointConflict", "CheckpointStore", "RunRecord"]


class CheckpointConflict(Exception):
    """Another run moved the checkpoint since it was read; this run's write was refused."""


@dataclass(frozen=True)
class Checkpoint:
    value: str | None
    etag: str | None


@dataclass(frozen=True)
class RunRecord:
    """How a job's last run ended: when, ``ok``/``partial``/``failed``, its summary and counts."""

    finished: str
    outcome: str
    summary: str
    counts: dict[str, int]


class TableStore:
    """One storage table of ``AzureWebJobsStorage``, created on first use."""

    def __init__(self, storage: StorageConfig | str, *, table_name: str, **options: Any) -> None:
        """``options`` go to the storage client (e.g. ``retry_total``, ``transport``, ``credential``)."""
        self._service = table_service(storage, **options)
        self._table_name = table_name
        self._table: Any = None

    def _client(self) -> Any:
        if self._table is None:
            self._table = self._service.create_table_if_not_exists(self._table_name)
        return self._table


class CheckpointStore(TableStore):
    """Named checkpoints (one row each) in a storage table."""

    def __init__(self, storage: StorageConfig | str, *, table_name: str = "bridgecheckpoints", **options: Any) -> None:
        super().__init__(storage, table_name=table_name, **options)

    def read(self, name: str) -> Checkpoint:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._client().get_entity("checkpoint", name)
        except ResourceNotFoundError:
            return Checkpoint(None, None)
        return Checkpoint(entity.get("Value"), entity.metadata["etag"])

    def write(self, name: str, value: str, *, expected: Checkpoint) -> Checkpoint:
        """Move the checkpoint from ``expected`` to ``value``; refuse if someone else moved it."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": "checkpoint", "RowKey": name, "Value": value}
        table = self._client()
        try:
            if expected.etag is None:
                metadata = table.create_entity(entity)
            else:
                metadata = table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=expected.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise CheckpointConflict(f"checkpoint {name!r} was moved by another run") from exc
        return Checkpoint(value, metadata["etag"])

    def save_run(self, name: str, record: RunRecord) -> None:
        """Remember the last run of job ``name`` (overwrites the previous one; last writer wins)."""
        import json

        from azure.data.tables import UpdateMode

        entity = {
            "PartitionKey": "lastrun",
            "RowKey": name,
            "Finished": record.finished,
            "Outcome": record.outcome,
            "Summary": record.summary,
            "Counts": json.dumps(record.counts),
        }
        self._client().upsert_entity(entity, mode=UpdateMode.REPLACE)

    def last_run(self, name: str) -> RunRecord | None:
        import json

        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._client().get_entity("lastrun", name)
        except ResourceNotFoundError:
            return None
        return RunRecord(
            str(entity.get("Finished")),
            str(entity.get("Outcome")),
            str(entity.get("Summary")),
            {k: int(v) for k, v in json.loads(entity.get("Counts") or "{}").items()},
        )
