"""Process-wide objects of the presence package, built on first use from the settings."""

from __future__ import annotations

import json
import logging
from functools import lru_cache

from bridge.settings import get_settings
from call_sync.runtime import enreach_client
from routing.runtime import dataverse_client

from .service import PresenceSync
from .state import PresenceStore

__all__ = ["presence_sync", "run_polling"]

log = logging.getLogger("presence_sync")


@lru_cache(maxsize=1)
def presence_sync() -> PresenceSync:
    settings = get_settings()
    section = settings.presence
    return PresenceSync(
        dataverse=dataverse_client(),
        enreach=enreach_client(),
        store=PresenceStore(settings.storage_connection_string),
        mapping=section.mapping,
        echo_ttl_seconds=section.echo_ttl_seconds,
        max_call_minutes=section.max_call_minutes,
        after_call_presence=section.mapping.presence_ids[section.after_call],
    )


def run_polling() -> None:
    """``sync_presence``: poll when PRESENCE_POLLING says so (auto: while Enreach sends no availability
    notifications), else log one line saying why not."""
    settings = get_settings()
    if not settings.presence_polling_enabled:
        log.info(
            "%s",
            json.dumps(
                {
                    "event": "presence_poll",
                    "skipped": "availability notifications are mapped (ENREACH_FIELD_MAP.events."
                    "availability_changed); set PRESENCE_POLLING=on to poll anyway",
                }
            ),
        )
        return
    presence_sync().poll()
