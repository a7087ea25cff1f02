"""``sync_phone_index``: keep the phone index (one row per record and phone column, E.164) current.

Reads contacts, accounts and leads modified since the checkpoint (minus an overlap, since
``modifiedon`` has one-second resolution and clocks differ), normalises their phone
columns, and writes only what changed: upserts by the ``enr_key`` alternate key and
deletes for numbers that were removed. The checkpoint (Azure Table Storage) moves to the
newest ``modifiedon`` seen only after every write of the run succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.schema import CUSTOMER_TABLES, PHONE_INDEX, CustomerTable
from core.state import CheckpointConflict, CheckpointStore
from dataverse import BatchRequest, ChangeSet, DataverseClient, key_path
from dataverse import filters as f
from matching import to_e164

__all__ = ["CHECKPOINT_NAME", "IndexSyncReport", "sync_phone_index"]

log = logging.getLogger("routing.index")
CHECKPOINT_NAME = "phone_index"
KEY_CHUNK = 100  # index keys per lookup query (URL length stays well under limits)


@dataclass
class IndexSyncReport:
    """Counts of one run; ``failed`` writes are also counted in ``written``/``deleted``."""

    scanned: int = 0
    written: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    checkpoint: str | None = None

    def summary(self) -> str:
        return (
            f"phone index: {self.scanned} records scanned, {self.written} numbers written, {self.deleted} removed, "
            f"{self.unchanged} unchanged, {self.failed} failed; checkpoint {self.checkpoint or 'none'}"
        )


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _pages(
    client: DataverseClient, table: CustomerTable, columns: Sequence[str], since: datetime | None, page_size: int
) -> Iterator[list[dict[str, Any]]]:
    page = client.query_page(
        table.entity_set,
        select=[table.primary_key, *columns, "modifiedon"],
        filter=f.ge("modifiedon", since) if since else None,
        orderby="modifiedon asc",
        page_size=page_size,
    )
    yield page.records
    while page.next_link:
        page = client.query_page(table.entity_set, select=[], next_link=page.next_link, page_size=page_size)
        yield page.records


def _existing(client: DataverseClient, keys: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for start in range(0, len(keys), KEY_CHUNK):
        chunk = keys[start : start + KEY_CHUNK]
        for row in client.query(
            PHONE_INDEX.entity_set,
            select=[PHONE_INDEX.key_column, PHONE_INDEX.number_column],
            filter=f.in_(PHONE_INDEX.key_column, chunk),
        ):
            found[row[PHONE_INDEX.key_column]] = row.get(PHONE_INDEX.number_column)
    return found


def _write(client: DataverseClient, operations: list[BatchRequest], batch_size: int) -> int:
    """Send operations in parallel $batch requests, at most ``batch_size`` each (one change set per
    operation, so one failure blocks nothing else)."""
    failed = 0
    outcomes = client.batch_each_parallel([ChangeSet([op]) for op in operations], max_batch=batch_size, idempotent=True)
    for operation, answer in zip(operations, outcomes, strict=True):
        if answer is None:
            failed += 1
            log.warning("phone index write got no answer: %s", operation.method)
        elif not answer.ok and not (operation.method == "DELETE" and answer.status == 404):
            failed += 1
            log.warning("phone index write failed: %s %s: %s", operation.method, answer.status, answer.error())
    return failed


def sync_phone_index(
    client: DataverseClient,
    store: CheckpointStore,
    *,
    phone_columns: Mapping[str, Sequence[str]],
    region: str,
    full: bool = False,
    overlap: timedelta = timedelta(minutes=5),
    page_size: int = 1000,
    batch_size: int = 200,
) -> IndexSyncReport:
    report = IndexSyncReport()
    checkpoint = store.read(CHECKPOINT_NAME)
    since = _parse(checkpoint.value) - overlap if checkpoint.value and not full else None
    newest = _parse(checkpoint.value) if checkpoint.value else None
    for table in CUSTOMER_TABLES:
        columns = tuple(phone_columns.get(table.logical_name, ()))
        if not columns:
            continue
        for records in _pages(client, table, columns, since, page_size):
            report.scanned += len(records)
            desired: dict[str, tuple[str | None, str, str]] = {}
            for record in records:
                record_id = str(record[table.primary_key]).lower()
                for column in columns:
                    key = f"{table.logical_name}:{record_id}:{column}"
                    desired[key] = (to_e164(record.get(column), region), column, record_id)
                if record.get("modifiedon"):
                    moment = _parse(record["modifiedon"])
                    newest = moment if newest is None or moment > newest else newest
            existing = _existing(client, list(desired))
            operations: list[BatchRequest] = []
            for key, (e164, column, record_id) in desired.items():
                path = key_path(PHONE_INDEX.entity_set, {PHONE_INDEX.key_column: key})
                if e164 is None:
                    if key in existing:
                        operations.append(BatchRequest("DELETE", path))
                        report.deleted += 1
                elif existing.get(key) == e164:
                    report.unchanged += 1
                else:
                    operations.append(
                        BatchRequest(
                            "PATCH",
                            path,
                            {
                                PHONE_INDEX.number_column: e164,
                                PHONE_INDEX.source_column: column,
                                f"{table.index_lookup}@odata.bind": f"/{table.entity_set}({record_id})",
                            },
                        )
                    )
                    report.written += 1
            report.failed += _write(client, operations, batch_size)
    if report.failed == 0 and newest is not None:
        value = newest.strftime("%Y-%m-%dT%H:%M:%SZ")
        if value != checkpoint.value:
            try:
                store.write(CHECKPOINT_NAME, value, expected=checkpoint)
            except CheckpointConflict:
                log.info("phone index checkpoint moved by a concurrent run; keeping theirs")
        report.checkpoint = value
    else:
        report.checkpoint = checkpoint.value
    log.info("%s", report.summary())
    return report
