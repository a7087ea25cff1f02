"""Durable state in Azure Table Storage (``AzureWebJobsStorage``): checkpoints with optimistic concurrency.

The stores take the storage settings (``core.storage_config.StorageConfig``: a connection string, or
identity-based storage with the managed identity) or a plain connection string (Azurite, tests).

Every store's table is created on first use and created again when it is gone (``TableNotFound``:
a storage account restored empty, a table deleted by hand, Azurite restarted): the call is retried
once on the new, empty table, so the next request or run succeeds without restarting the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
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


log = logging.getLogger("core.state")


def _table_gone(error: Exception) -> bool:
    """A 404 about the table, not the entity (``create_entity`` on a missing table carries no code)."""
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "") != "ResourceNotFound"


class _HealingTable:
    """The store's ``TableClient``: a call that finds the table gone creates it again and is retried
    once; a query over a table that is gone has no rows (after creating it again)."""

    def __init__(self, store: TableStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store._table_client(), name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            from azure.core.exceptions import ResourceNotFoundError

            try:
                result = getattr(self._store._table_client(), name)(*args, **kwargs)
            except ResourceNotFoundError as error:
                if not _table_gone(error):
                    raise
                self._store._recreate(error)
                result = getattr(self._store._table_client(), name)(*args, **kwargs)
            if name.startswith(("query_", "list_")):
                return self._rows(result)
            return result

        return call

    def _rows(self, pages: Any) -> Iterator[Any]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            yield from pages
        except ResourceNotFoundError as error:
            if not _table_gone(error):
                raise
            self._store._recreate(error)  # a new table holds no rows


class TableStore:
    """One storage table of ``AzureWebJobsStorage``, created on first use and again when it is gone."""

    def __init__(self, storage: StorageConfig | str, *, table_name: str, **options: Any) -> None:
        """``options`` go to the storage client (e.g. ``retry_total``, ``transport``, ``credential``)."""
        self._service = table_service(storage, **options)
        self._table_name = table_name
        self._table: Any = None
        self._healing = _HealingTable(self)
        self.on_recreate: Callable[[str], None] | None = None  # tests and logs: the table was created again

    def _table_client(self) -> Any:
        if self._table is None:
            self._table = self._service.create_table_if_not_exists(self._table_name)
        return self._table

    def _recreate(self, error: Exception) -> None:
        log.warning("storage table %s was gone (%s): created again, empty", self._table_name, type(error).__name__)
        self._table = None
        self._table_client()
        if self.on_recreate is not None:
            self.on_recreate(self._table_name)

    def _client(self) -> Any:
        """The table's client; every call on it survives the table being deleted meanwhile."""
        self._table_client()
        return self._healing


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
