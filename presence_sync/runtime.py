"""Process-wide objects of the presence package, built on first use from the settings."""

from __future__ import annotations

import json
import logging
from functools import lru_cache

from call_sync.runtime import enreach_client
from core.settings import get_settings
from routing.runtime import dataverse_client

from .config import PresenceConfig
from .service import PresenceSync
from .state import PresenceStore

__all__ = ["presence_sync", "run_polling"]

log = logging.getLogger("presence_sync")


@lru_cache(maxsize=1)
def presence_sync() -> PresenceSync:
    settings = get_settings()
    section = settings.presence or PresenceConfig()
    return PresenceSync(
        dataverse=dataverse_client(),
        enreach=enreach_client(),
        store=PresenceStore(
            settings.storage_connection_string,
            keep_ended_seconds=max(settings.presence_max_call_minutes * 60.0, section.max_event_age_seconds),
        ),
        mapping=settings.presence_mapping,
        echo_ttl_seconds=settings.presence_echo_ttl_seconds,
        max_call_minutes=settings.presence_max_call_minutes,
        after_call_presence=settings.presence_mapping.presence_ids[settings.presence_after_call],
        max_event_age_seconds=section.max_event_age_seconds,
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
