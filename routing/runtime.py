"""Process-wide objects of the routing package, built on first use from the settings."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from bridge.rows import config_rows
from bridge.runtime import checkpoint_store, dataverse_client
from bridge.settings import Settings, get_settings
from core.rows import RowSource, RowsSnapshot
from dataverse import DataverseClient
from matching import CallerLookup

from .availability import AvailabilitySource, PresenceAvailability, read_enreach_status
from .rules import Rule
from .service import Router

if TYPE_CHECKING:
    from enreach import EnreachClient
    from presence_sync.state import PresenceStore

__all__ = [
    "availability_for",
    "build_router",
    "checkpoint_store",
    "dataverse_client",
    "follow_rule_rows",
    "live_router",
    "lookup_for_rules",
    "router",
    "warm_up",
]

log = logging.getLogger("routing.warmup")


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
    from enreach import client_from_config
    from presence_sync.state import PresenceStore

    if enreach is None and settings.has("enreach"):
        enreach = client_from_config(
            settings.enreach, timeout=settings.routing.time_budget_seconds, retry=RetryPolicy(max_attempts=1)
        )
    reader = enreach
    return PresenceAvailability(
        store=store or PresenceStore(settings.storage_connection_string),
        # a routing-only deployment (BRIDGE_JOBS=routing) has no Enreach section: that side is unknown
        enreach=(lambda user_id: read_enreach_status(reader, user_id)) if reader is not None else None,
        dataverse=client,
    )


def lookup_for_rules(
    settings: Settings, client: DataverseClient, rules: Sequence[Rule], *, clock: Callable[[], datetime] | None = None
) -> CallerLookup:
    """The caller lookup fetching what these rules need."""
    return CallerLookup(
        client,
        rules=rules,
        owner_column=settings.matching.owner_phone_column,
        phone_columns=settings.matching.phone_columns,
        region=settings.matching.region,
        clock=clock or _utcnow,
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
    lookup = lookup_for_rules(settings, client, settings.routing.rules, clock=now)
    if availability is None and any(rule.require_available for rule in settings.routing.rules):
        availability = availability_for(settings, client)
    return Router(
        lookup,
        rules=settings.routing.rules,
        region=settings.matching.region,
        owner_column=settings.matching.owner_phone_column,
        budget_seconds=settings.routing.time_budget_seconds,
        cache_ttl_seconds=settings.routing.cache_ttl_seconds,
        max_lookups=settings.routing.max_lookups,
        availability=availability,
        clock=now,
    )


@lru_cache(maxsize=1)
def router() -> Router:
    """This instance's router; rule rows (``enr_routingrule``) replace its rules as they are read."""
    settings, client = get_settings(), dataverse_client()
    built = build_router(settings, client)
    follow_rule_rows(built, settings, client, config_rows())
    return built


def live_router() -> Router:
    """The router for a routing call: starts a configuration refresh in the background when one is
    due and never waits for it (the call uses the last good configuration)."""
    built = router()
    config_rows().refresh_in_background()
    return built


def follow_rule_rows(
    built: Router,
    settings: Settings,
    client: DataverseClient,
    source: RowSource,
    *,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Give ``built`` the active rule rows of each new snapshot (in the refresh thread), or the app
    setting's rules when no row is active; write each bad row's ``enr_error`` once."""
    from core.telemetry import log_event

    from .rows import RuleRows

    rows = RuleRows(settings.matching.owner_phone_column)

    def apply(snapshot: RowsSnapshot) -> None:
        from_rows, problems = rows.rules(snapshot.rules)
        source.settle_errors(snapshot.rules, problems)
        wanted = from_rows or settings.routing.rules
        if wanted == built.rules:
            return
        availability = None
        if any(rule.require_available for rule in wanted) and not built.has_availability:
            availability = availability_for(settings, client)
        built.reconfigure(wanted, lookup_for_rules(settings, client, wanted, clock=clock), availability=availability)
        log_event(
            "routing_rules_applied",
            source="rows" if from_rows else "app setting",
            rules=[rule.name for rule in wanted],
            refused=len(problems),
        )

    source.subscribe(apply)


def warm_up() -> dict[str, object]:
    """Ready this instance for its first routing call: build the router (which imports matching,
    rules and the clients), get the Dataverse token and open the connection with one request: the
    read of the configuration rows (so the first call has them), or ``WhoAmI`` when that read failed
    (its error is the one reported).

    Run by the ``warmup`` trigger before a new instance takes traffic (Premium); on plans without
    it the first routing request builds the same objects on first use, and they are shared, so the
    token is fetched once either way. Never raises: a failure is logged and the first request tries
    again (within its time budget).
    """
    started = time.monotonic()
    result: dict[str, object] = {"event": "routing_warmup", "ok": True}
    try:
        router()
        source, client = config_rows(), dataverse_client()
        failures = source.failures
        source.refresh_now()  # the rows before the first call (no call waits for them)
        if source.failures != failures:
            client.whoami(deadline=time.monotonic() + get_settings().dataverse.timeout)
        result["dop_hint"] = client.dop_hint
    except Exception as error:  # the instance still starts; the first request retries on its own
        result.update(ok=False, error=f"{type(error).__name__}: {str(error)[:200]}")
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    log.info("%s", json.dumps(result))
    return result
