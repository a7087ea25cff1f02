"""Process-wide objects of the callback package, built on first use from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from bridge.runtime import checkpoint_store, dataverse_client, enreach_client
from bridge.settings import Settings, get_settings
from dataverse import DataverseClient

from .sync import CallbackOptions, CallbackSync

if TYPE_CHECKING:
    from .notify import Answer

__all__ = ["DEFAULT_BUDGET_SECONDS", "callback_sync", "dispatch_notification", "options", "sync_for"]

DEFAULT_BUDGET_SECONDS = 3.0  # PRESENCE_TIME_BUDGET_SECONDS's default, for a deployment without presence


def options(settings: Settings) -> CallbackOptions:
    section = settings.callbacks
    return CallbackOptions(
        region=settings.matching.region,
        default_assignee=section.default_assignee,
        queues=dict(section.queues),
        close_in_enreach=section.close_in_enreach,
        initial_lookback=timedelta(hours=section.initial_lookback_hours),
        batch_size=section.batch_size,
    )


def sync_for(settings: Settings, client: DataverseClient) -> CallbackSync:
    """The callback sync over these settings and Dataverse client, with the shared Enreach client,
    the call sync's customer matching and the shared checkpoint store."""
    from call_sync.runtime import lookup_for

    return CallbackSync(
        enreach_client(), client, lookup_for(settings, client), options(settings), store=checkpoint_store()
    )


@lru_cache(maxsize=1)
def callback_sync() -> CallbackSync:
    return sync_for(get_settings(), dataverse_client())


def dispatch_notification(headers: Mapping[str, str], body: bytes) -> Answer | None:
    """For the Enreach notification endpoint: answer a callback notification with the app's
    settings, or None to let the presence handler answer. With the callbacks job off
    (``BRIDGE_JOBS``) a callback notification is answered 202 (ignored), once authenticated."""
    from core.auth import authenticate_enreach

    from .notify import handle_callback_notification

    settings = get_settings()
    enreach = settings.enreach if settings.has("enreach") else None
    if enreach is None:
        return None  # no job reads Enreach: the presence handler (if any) answers

    def authenticate(given: Mapping[str, str]) -> bool:
        # The endpoint's own credential only: the routing key Enreach holds for SmartRouting is refused.
        return authenticate_enreach(
            given,
            api_key=None,
            basic_user=None,
            basic_password=None,
            secret=enreach.webhook_secret,
            secret_header=enreach.webhook_secret_header,
        )

    return handle_callback_notification(
        headers=headers,
        body=body,
        event_type_names=enreach.mapping.events.event_type,
        names=enreach.mapping.callbacks,
        authenticate=authenticate,
        enabled=settings.has("callbacks") and settings.callbacks.notifications,
        unauthenticated=(
            f"authenticate with the {enreach.webhook_secret_header} header (the webhook Secret Enreach support "
            "configured); the routing API key is not accepted here"
        ),
        sync=callback_sync,
        # Enreach waits about 5 s: answer within the presence webhook's budget (the same endpoint)
        budget=settings.presence.time_budget_seconds if settings.has("presence") else DEFAULT_BUDGET_SECONDS,
    )
