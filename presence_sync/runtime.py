"""Process-wide objects of the presence package, built on first use from the settings."""

from __future__ import annotations

import json
import logging
from functools import lru_cache

from bridge.rows import config_rows
from bridge.settings import get_settings
from call_sync.runtime import enreach_client
from core.rows import RowsSnapshot
from routing.runtime import dataverse_client

from .service import PresenceSync, RunReport
from .state import PresenceStore

__all__ = ["live_presence_sync", "presence_sync", "run_polling"]

log = logging.getLogger("presence_sync")


@lru_cache(maxsize=1)
def presence_sync() -> PresenceSync:
    """This instance's presence sync; setting rows (PRESENCE_MAPPING, PRESENCE_AFTER_CALL) reach it
    at each configuration refresh."""
    settings = get_settings()
    section = settings.presence
    sync = PresenceSync(
        dataverse=dataverse_client(),
        enreach=enreach_client(),
        store=PresenceStore(settings.storage_connection_string),
        mapping=section.mapping,
        echo_ttl_seconds=section.echo_ttl_seconds,
        max_call_minutes=section.max_call_minutes,
        after_call_presence=section.mapping.presence_ids[section.after_call],
    )
    source = config_rows()

    def follow(snapshot: RowsSnapshot) -> None:
        current = (source.effective or settings).presence
        sync.reconfigure(current.mapping, current.mapping.presence_ids[current.after_call])

    source.subscribe(follow)
    return sync


def live_presence_sync() -> PresenceSync:
    """The presence sync for a webhook event: a configuration refresh starts in the background when
    one is due, and the event never waits for it."""
    sync = presence_sync()
    config_rows().refresh_in_background()
    return sync


def run_polling() -> RunReport | None:
    """``sync_presence``: poll when PRESENCE_POLLING says so (auto: while Enreach sends no availability
    notifications), else log one line saying why not."""
    settings = get_settings()
    if not settings.presence_polling_enabled:
        log.info(
            "%s",
            json.dumps(
                {
                    "event": "presence_poll",
                    "outcome": "skipped",
                    "skipped": "availability notifications are mapped (ENREACH_FIELD_MAP.events."
                    "availability_changed); set PRESENCE_POLLING=on to poll anyway",
                }
            ),
        )
        return None
    sync = presence_sync()
    config_rows().refresh_if_due()  # the setting rows at the start of the run
    return sync.poll()
