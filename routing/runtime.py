"""Process-wide objects of the routing package, built on first use from the settings."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from core.rows import ConfigRow, RowSource, RowsSnapshot, read_paths
from core.runstatus import RunStatusWriter
from core.setting_rows import SettingRows
from core.settings import Settings, get_settings, load_settings
from core.state import CheckpointStore
from dataverse import DataverseClient, credential_from_settings
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
    "config_rows",
    "dataverse_client",
    "effective_settings",
    "live_router",
    "router",
    "run_status",
    "warm_up",
]

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
        credential=credential_from_settings(settings),
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
        store=store or PresenceStore(settings.storage_connection_string),
        enreach=lambda user_id: read_enreach_status(reader, user_id),
        dataverse=client,
    )


def lookup_for_rules(
    settings: Settings, client: DataverseClient, rules: Sequence[Rule], *, clock: Callable[[], datetime] | None = None
) -> CallerLookup:
    """The caller lookup fetching what these rules need."""
    return CallerLookup(
        client,
        rules=rules,
        owner_column=settings.routing_owner_phone_column,
        phone_columns=settings.routing_phone_columns,
        region=settings.phone_default_region,
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
    lookup = lookup_for_rules(settings, client, settings.routing_rules, clock=now)
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

    rows = RuleRows(settings.routing_owner_phone_column)

    def apply(snapshot: RowsSnapshot) -> None:
        from_rows, problems = rows.rules(snapshot.rules)
        source.settle_errors(snapshot.rules, problems)
        wanted = from_rows or settings.routing_rules
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


@lru_cache(maxsize=1)
def config_rows() -> RowSource:
    """This instance's configuration rows (settings and routing rules), one ``$batch`` per refresh."""
    settings, client = get_settings(), dataverse_client()
    owner_column = settings.routing_owner_phone_column
    return RowSource(
        lambda: read_config_rows(client, owner_column),
        interval=settings.config_refresh_seconds,
        write_error=lambda row, text: write_row_error(client, row, text),
    )


def read_config_rows(
    client: DataverseClient, owner_column: str
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Both tables in one request; a table not provisioned yet reads as empty (app settings only)."""
    from dataverse import BatchRequest

    answers = client.batch(
        [BatchRequest("GET", path) for path in read_paths([owner_column])], continue_on_error=True, idempotent=True
    )
    tables: list[list[dict[str, object]]] = []
    for answer in answers:
        if answer.status == 404:
            tables.append([])
            continue
        answer.raise_for_status()
        tables.append(list(answer.body.get("value", [])))
    if len(tables) != 2:
        raise RuntimeError("the configuration $batch was not answered in full")
    return tables[0], tables[1]


def write_row_error(client: DataverseClient, row: ConfigRow, text: str | None) -> None:
    """Set (or clear) a configuration row's ``enr_error``."""
    import uuid

    from core.schema import BRIDGE_SETTING, ERROR_COLUMN, ROUTING_RULE

    table = ROUTING_RULE if row.table == ROUTING_RULE.logical_name else BRIDGE_SETTING
    client.update(table.entity_set, uuid.UUID(row.row_id), {ERROR_COLUMN: text})


def effective_settings() -> Settings:
    """The settings a timer run uses: the app settings with the setting rows read at its start
    (when the last read is older than the refresh interval); a bad row's ``enr_error`` written once."""
    import os

    source = config_rows()
    snapshot = source.refresh_if_due()
    if snapshot is None:
        return get_settings()
    settings, _, problems = _setting_rows().apply(os.environ, snapshot.settings)
    source.settle_errors(snapshot.settings, problems)
    return settings


@lru_cache(maxsize=1)
def _setting_rows() -> SettingRows[Settings]:
    return SettingRows(load=load_settings)


@lru_cache(maxsize=1)
def run_status() -> RunStatusWriter:
    """The timers' run status sink: one upsert of the job's ``enr_bridgerun`` row per run."""
    client = dataverse_client()
    return RunStatusWriter(lambda entity_set, key, row: client.upsert(entity_set, key, row))


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
        config_rows().refresh_now()  # the rows before the first call (no call waits for them)
        client = dataverse_client()
        client.whoami(deadline=time.monotonic() + get_settings().http_timeout_seconds)
        result["dop_hint"] = client.dop_hint
    except Exception as error:  # the instance still starts; the first request retries on its own
        result.update(ok=False, error=f"{type(error).__name__}: {str(error)[:200]}")
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    log.info("%s", json.dumps(result))
    return result
