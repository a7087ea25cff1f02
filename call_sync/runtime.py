"""Process-wide objects of the call sync package, built on first use from the settings."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from bridge.rows import effective_settings, run_status
from bridge.runtime import checkpoint_store, dataverse_client, enreach_client
from bridge.settings import Settings, get_settings
from dataverse import DataverseClient
from matching import CallerLookup, LookupNeeds

from .calls import CallSyncOptions
from .customers import PARENT_COLUMN
from .parking import ParkedCalls

__all__ = [
    "call_lookup",
    "checkpoint_store",
    "dataverse_client",
    "effective_settings",
    "enreach_client",
    "lookup_for",
    "options",
    "parking_store",
    "run_status",
]


def options(settings: Settings, *, dry_run: bool = False) -> CallSyncOptions:
    return CallSyncOptions(
        region=settings.matching.region,
        duration_limit_seconds=settings.call_sync.duration_limit_seconds,
        default_assignee=settings.call_sync.default_assignee,
        overlap=timedelta(minutes=settings.call_sync.overlap_minutes),
        batch_size=settings.call_sync.batch_size,
        dry_run=dry_run,
        start_margin=timedelta(seconds=settings.call_sync.start_margin_seconds),
        park_for=timedelta(days=settings.call_sync.park_days),
        initial_lookback=timedelta(hours=settings.call_sync.initial_lookback_hours),
        private_calls=settings.call_sync.private_calls,
        recording_link=settings.call_sync.recording_link,
        enreach_request_budget=settings.call_sync.enreach_request_budget,
    )


def lookup_for(settings: Settings, client: DataverseClient) -> CallerLookup:
    """The customer matching of the call sync: routing's lookup without routing's rules."""
    return CallerLookup(
        client,
        rules=(),
        owner_column=settings.matching.owner_phone_column,
        phone_columns=settings.matching.phone_columns,
        region=settings.matching.region,
        needs=LookupNeeds(columns=frozenset({("contact", PARENT_COLUMN)})),  # a contact whose account matched wins
    )


@lru_cache(maxsize=1)
def call_lookup() -> CallerLookup:
    return lookup_for(get_settings(), dataverse_client())


@lru_cache(maxsize=1)
def parking_store() -> ParkedCalls:
    return ParkedCalls(get_settings().storage_connection_string)
