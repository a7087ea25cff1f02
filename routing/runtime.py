"""Process-wide objects of the routing package, built on first use from the settings."""

from __future__ import annotations

from functools import lru_cache

from core.settings import Settings, get_settings
from core.state import CheckpointStore
from dataverse import DataverseClient, credential_from_settings

from .lookup import CallerLookup
from .service import Router

__all__ = ["build_router", "checkpoint_store", "dataverse_client", "router"]


@lru_cache(maxsize=1)
def dataverse_client() -> DataverseClient:
    settings = get_settings()
    return DataverseClient(
        settings.dataverse_url, credential=credential_from_settings(settings), timeout=settings.http_timeout_seconds
    )


def build_router(settings: Settings, client: DataverseClient) -> Router:
    lookup = CallerLookup(
        client,
        rules=settings.routing_rules,
        owner_column=settings.routing_owner_phone_column,
        phone_columns=settings.routing_phone_columns,
        region=settings.phone_default_region,
    )
    return Router(
        lookup,
        rules=settings.routing_rules,
        region=settings.phone_default_region,
        owner_column=settings.routing_owner_phone_column,
        budget_seconds=settings.routing_time_budget_seconds,
        cache_ttl_seconds=settings.routing_cache_ttl_seconds,
    )


@lru_cache(maxsize=1)
def router() -> Router:
    return build_router(get_settings(), dataverse_client())


@lru_cache(maxsize=1)
def checkpoint_store() -> CheckpointStore:
    return CheckpointStore(get_settings().storage_connection_string)
