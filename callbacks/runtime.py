"""Process-wide objects of the callback package, built on first use from the settings."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from core.settings import Settings, get_settings
from dataverse import DataverseClient

from .sync import CallbackOptions, CallbackSync

__all__ = ["callback_sync", "options", "sync_for"]


def options(settings: Settings) -> CallbackOptions:
    return CallbackOptions(
        region=settings.phone_default_region,
        default_assignee=settings.default_crm_assignee,
        queues=dict(settings.callbacks.queues),
        close_in_enreach=settings.callbacks.close_in_enreach,
        initial_lookback=timedelta(hours=settings.callbacks.initial_lookback_hours),
        batch_size=settings.call_sync_batch_size,
    )


def sync_for(settings: Settings, client: DataverseClient) -> CallbackSync:
    """The callback sync over these settings and Dataverse client (the call sync's Enreach client,
    customer matching and checkpoint store are reused)."""
    from call_sync.runtime import checkpoint_store, enreach_client, lookup_for

    return CallbackSync(
        enreach_client(),
        client,
        lookup_for(settings, client),
        options(settings),
        store=checkpoint_store(),
    )


@lru_cache(maxsize=1)
def callback_sync() -> CallbackSync:
    from call_sync.runtime import dataverse_client

    return sync_for(get_settings(), dataverse_client())
