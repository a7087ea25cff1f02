"""Durable state lives in Azure Table Storage; Azurite stands in for it here."""

from __future__ import annotations

import uuid


def test_table_storage_round_trip_with_optimistic_concurrency(azurite):
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError
    from azure.data.tables import TableServiceClient, UpdateMode

    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table = service.create_table_if_not_exists(f"t{uuid.uuid4().hex[:12]}")
    table.upsert_entity({"PartitionKey": "checkpoint", "RowKey": "calls", "Position": "2026-11-24T08:00:00Z"})
    entity = table.get_entity("checkpoint", "calls")
    assert entity["Position"] == "2026-11-24T08:00:00Z"
    entity["Position"] = "2026-11-24T09:00:00Z"
    table.update_entity(
        entity, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
    )
    stale = dict(entity)
    try:
        table.update_entity(
            stale, mode=UpdateMode.REPLACE, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
        )
    except ResourceModifiedError:
        pass
    else:
        raise AssertionError("a stale etag must be refused")
