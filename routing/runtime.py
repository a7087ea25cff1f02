"""Process-wide objects of the routing package, built on first use from the settings."""

from __future__ import annotations

import json
import logging
import time
from functools import lru_cache

from core.settings import Settings, get_settings
from core.state import CheckpointStore
from dataverse import DataverseClient, credential_from_settings

from .lookup import CallerLookup
from .service import Router

__all__ = ["build_router", "checkpoint_store", "dataverse_client", "router", "warm_up"]

log = logging.getLogger("routing.warmup")


@lru_cache(maxsize=1)
def dataverse_client() -> DataverseClient:
    settings = get_settings()
    return DataverseClient(
        settings.dataverse_url,
        credential=credential_from_settings(settings),
        timeout=settings.http_timeout_seconds,
        max_parallel=settings.dataverse_max_parallel_batches,
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


def warm_up() -> dict[str, object]:
    """Ready this instance for its first routing call: build the router (which imports matching,
    rules and the clients), get the Dataverse token and open the connection with one ``WhoAmI``.

    Run by the ``warmup`` trigger before a new instance takes traffic (Premium); on plans without
    it the first routing request builds the same objects on first use, and they are shared, so the
    token is fetched once either way. Never raises: a failure is logged and the first request tries
    again (within its time budget).
    """
    started = time.monotonic()
    result: dict[str, object] = {"event": "routing_warmup", "ok": True}
    try:
        router()
        client = dataverse_client()
        client.whoami(deadline=time.monotonic() + get_settings().http_timeout_seconds)
        result["dop_hint"] = client.dop_hint
    except Exception as error:  # the instance still starts; the first request retries on its own
        result.update(ok=False, error=f"{type(error).__name__}: {str(error)[:200]}")
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    log.info("%s", json.dumps(result))
    return result
