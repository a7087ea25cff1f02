"""Process-wide objects of the presence package, built on first use from the settings."""

from __future__ import annotations

from functools import lru_cache

from call_sync.runtime import enreach_client
from core.settings import get_settings
from routing.runtime import dataverse_client

from .service import PresenceSync
from .state import PresenceStore

__all__ = ["presence_sync"]


@lru_cache(maxsize=1)
def presence_sync() -> PresenceSync:
    settings = get_settings()
    return PresenceSync(
        dataverse=dataverse_client(),
        enreach=enreach_client(),
        store=PresenceStore(settings.storage_connection_string),
        mapping=settings.presence_mapping,
        echo_ttl_seconds=settings.presence_echo_ttl_seconds,
    )
