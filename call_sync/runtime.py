"""Process-wide objects of the call sync package, built on first use from the settings."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache

from bridge.rows import effective_settings, run_status
from bridge.runtime import checkpoint_store, dataverse_client, enreach_client
from bridge.settings import Settings, get_settings
from dataverse import DataverseClient
from matching import CallerLookup, LookupNeeds, to_e164

from .calls import CallSyncOptions
from .customers import PARENT_COLUMN
from .parking import ParkedCalls
from .transcripts import PendingTranscripts

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
    "transcript_store",
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
        follow_ups=settings.call_sync.follow_ups,
        follow_up_due=timedelta(hours=settings.call_sync.follow_up_due_hours),
        queue_calls=settings.call_sync.queue_calls,
        queue_map=dict(settings.call_sync.queue_map),
        unknown_caller_leads=settings.call_sync.unknown_caller_leads,
        blocked_numbers=frozenset(
            n for n in (to_e164(b, settings.matching.region) for b in settings.call_sync.blocked_numbers) if n
        ),
        regarding_case=settings.call_sync.regarding_case,
        regarding_opportunity=settings.call_sync.regarding_opportunity,
        transcripts=settings.call_sync.transcripts,
        transcript_wait=timedelta(hours=settings.call_sync.transcript_wait_hours),
    )


def lookup_for(settings: Settings, client: DataverseClient) -> CallerLookup:
    """The customer matching of the call sync: routing's lookup without routing's rules."""
    return CallerLookup(
        client,
        rules=(),
        owner_column=settings.matching.owner_phone_column,
        phone_columns=settings.matching.phone_columns,
        region=settings.matching.region,
        needs=LookupNeeds(
            columns=frozenset({("contact", PARENT_COLUMN)}),  # a contact whose account matched wins
            # the owning user (a follow-up's owner; None when a team owns the record), and the open
            # cases/opportunities a call may be regarding: expanded in the same round trip
            user_columns=frozenset({"systemuserid"}),
            # (the callbacks job shares this lookup and may run without the call sync's section)
            open_records=frozenset(
                name
                for name, on in (
                    ("incident", settings.call_sync.regarding_case),
                    ("opportunity", settings.call_sync.regarding_opportunity),
                )
                if on
            )
            if settings.has("call_sync")
            else frozenset(),
        ),
    )


@lru_cache(maxsize=1)
def call_lookup() -> CallerLookup:
    return lookup_for(get_settings(), dataverse_client())


@lru_cache(maxsize=1)
def parking_store() -> ParkedCalls:
    return ParkedCalls(get_settings().storage)


@lru_cache(maxsize=1)
def transcript_store() -> PendingTranscripts | None:
    """Where pending transcripts wait (beside the parked calls); None while CALL_SYNC_TRANSCRIPTS is off."""
    settings = get_settings()
    return PendingTranscripts(settings.storage) if settings.call_sync.transcripts else None
