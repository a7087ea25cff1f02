"""Plain helpers the tests share (fixtures live in conftest.py): clients pointed at the
emulators with a fast retry policy, and resetting the app's process-wide objects."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from core.retry import RetryPolicy
from core.settings import Settings
from dataverse import DataverseClient, credential_from_settings
from enreach import EnreachClient

if TYPE_CHECKING:
    import pytest

    from sandbox.host import LocalFunctionsHost

__all__ = ["FAST_RETRY", "clear_app_caches", "dataverse_client_for", "enreach_client_for", "serving_app"]

FAST_RETRY = RetryPolicy(max_attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.05, max_retry_after_seconds=5)


def dataverse_client_for(settings: Settings, **options: Any) -> DataverseClient:
    """The app's Dataverse client for these settings (``retry`` defaults to ``FAST_RETRY``)."""
    options.setdefault("retry", FAST_RETRY)
    return DataverseClient(settings.dataverse_url, credential=credential_from_settings(settings), **options)


def enreach_client_for(settings: Settings, **options: Any) -> EnreachClient:
    """The app's Enreach client for these settings, found through the emulator's discovery."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("discovery_url", settings.enreach_discovery_url)
    return EnreachClient(settings.enreach_user, settings.enreach_secret_key, **options)


def clear_app_caches() -> None:
    """Forget the settings and the objects the function runtimes built from them."""
    from call_sync import runtime as call_runtime
    from core.settings import get_settings
    from presence_sync import runtime as presence_runtime
    from routing import runtime as routing_runtime

    for cached in (
        get_settings,
        routing_runtime.dataverse_client,
        routing_runtime.router,
        routing_runtime.checkpoint_store,
        call_runtime.enreach_client,
        call_runtime.call_lookup,
        call_runtime.parking_store,
        presence_runtime.presence_sync,
    ):
        cached.cache_clear()


@contextmanager
def serving_app(monkeypatch: pytest.MonkeyPatch, settings: Mapping[str, str]) -> Iterator[LocalFunctionsHost]:
    """The app's functions on a loopback port, configured by these app settings as the host would be;
    the runtimes are rebuilt from them, and forgotten again afterwards."""
    from function_app import app
    from sandbox.host import LocalFunctionsHost

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    clear_app_caches()
    host = LocalFunctionsHost(app, port=0).start()
    try:
        yield host
    finally:
        host.stop()
        clear_app_caches()
