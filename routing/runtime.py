"""Process-wide objects of the routing package, built on first use from the settings."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from core.settings import Settings, get_settings
from core.state import CheckpointStore
from dataverse import DataverseClient, credential_from_settings
from matching import CallerLookup

from . import prefetch
from .availability import AvailabilitySource, PresenceAvailability, read_enreach_status
from .service import Router

if TYPE_CHECKING:
    from enreach import EnreachClient
    from presence_sync.state import PresenceStore

__all__ = ["availability_for", "build_router", "checkpoint_store", "dataverse_client", "router", "warm_up"]

log = logging.getLogger("routing.warmup")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1)
def dataverse_client() -> DataverseClient:
    import requests
    from requests.adapters import HTTPAdapter

    settings = get_settings()
    session = requests.Session()
    # one pooled connection per concurrent caller lookup, so a burst reuses connections
    adapter = HTTPAdapter(pool_maxsize=max(10, settings.routing_max_lookups))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return DataverseClient(
        settings.dataverse_url,
        # the token fetched while this process imported (routing/prefetch.py), when one was started
        credential=prefetch.credential_for(settings, lambda: credential_from_settings(settings)),
        timeout=settings.http_timeout_seconds,
        session=session,
        max_parallel=settings.dataverse_max_parallel_batches,
    )


def availability_for(
    settings: Settings,
    client: DataverseClient,
    *,
    enreach: EnreachClient | None = None,
    store: PresenceStore | None = None,
) -> PresenceAvailability:
    """Availability from the presence sync's Table Storage state, Enreach (one read, no retries:
    the routing budget is shorter than a back-off) and Omnichannel presence in Dataverse."""
    from core.retry import RetryPolicy
    from enreach import client_from_settings
    from presence_sync.state import PresenceStore

    if enreach is None:
        enreach = client_from_settings(
            settings, timeout=settings.routing_time_budget_seconds, retry=RetryPolicy(max_attempts=1)
        )
    reader = enreach
    return PresenceAvailability(
        store=store or PresenceStore(settings.storage),
        enreach=lambda user_id: read_enreach_status(reader, user_id),
        dataverse=client,
    )


def build_router(
    settings: Settings,
    client: DataverseClient,
    *,
    availability: AvailabilitySource | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Router:
    """The router for these settings; an availability source is built only when a rule needs one."""
    now = clock or _utcnow
    lookup = CallerLookup(
        client,
        rules=settings.routing_rules,
        owner_column=settings.routing_owner_phone_column,
        phone_columns=settings.routing_phone_columns,
        region=settings.phone_default_region,
        clock=now,
    )
    if availability is None and any(rule.require_available for rule in settings.routing_rules):
        availability = availability_for(settings, client)
    return Router(
        lookup,
        rules=settings.routing_rules,
        region=settings.phone_default_region,
        owner_column=settings.routing_owner_phone_column,
        budget_seconds=settings.routing_time_budget_seconds,
        cache_ttl_seconds=settings.routing_cache_ttl_seconds,
        max_lookups=settings.routing_max_lookups,
        availability=availability,
        clock=now,
    )


@lru_cache(maxsize=1)
def router() -> Router:
    return build_router(get_settings(), dataverse_client())


@lru_cache(maxsize=1)
def checkpoint_store() -> CheckpointStore:
    return CheckpointStore(get_settings().storage)


def warm_up() -> dict[str, object]:
    """Ready this instance for its first routing call: build the router (which imports matching,
    rules and the clients), get the Dataverse token and open the connection with one ``WhoAmI``.

    Run by the ``warmup`` trigger before a new instance takes traffic (Premium); on plans without
    it the first routing request builds the same objects on first use, and they are shared, so the
    token is fetched once either way. Never raises: a failure is logged and the first request tries
    again (within its time budget).
    """
    started = time.monotonic()
    prefetch.start()  # the token is fetched while the router is built
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
