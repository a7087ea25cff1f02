"""Plain helpers the tests share (fixtures live in conftest.py): clients pointed at the
emulators with a fast retry policy, and resetting the app's process-wide objects."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.settings import Settings
from core.retry import RetryPolicy
from dataverse import DataverseClient, credential_from_config
from enreach import EnreachClient, client_from_config

if TYPE_CHECKING:
    import pytest

    from sandbox.host import LocalFunctionsHost

__all__ = [
    "FAST_RETRY",
    "clear_app_caches",
    "dataverse_client_for",
    "enreach_call",
    "enreach_client_for",
    "enreach_users",
    "serving_app",
]

FAST_RETRY = RetryPolicy(max_attempts=4, backoff_seconds=0.01, max_backoff_seconds=0.05, max_retry_after_seconds=5)


def dataverse_client_for(settings: Settings, **options: Any) -> DataverseClient:
    """The app's Dataverse client for these settings (``retry`` defaults to ``FAST_RETRY``)."""
    options.setdefault("retry", FAST_RETRY)
    return DataverseClient(settings.dataverse.url, credential=credential_from_config(settings.dataverse), **options)


def enreach_client_for(settings: Settings, **options: Any) -> EnreachClient:
    """The app's Enreach client for these settings, found through the emulator's discovery."""
    options.setdefault("retry", FAST_RETRY)
    return client_from_config(settings.enreach, **options)


def enreach_call(
    call_id: str,
    user_name: str,
    start: datetime,
    *,
    seconds: int = 60,
    outgoing: bool = False,
    number: str | None = "+358501234567",
    own_number: str = "+358942421001",
    classification: str | None = "Work",
    mobile: bool = False,
    modified: datetime | None = None,
    recordings: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One user call record as the Enreach API sends it (evidence names: CallId, UserName,
    StartTime/TimeStamp, boolean Direction, ANum/BNum, Duration, EndResult, RecordingIds), plus the
    app's default names for what no public source names (Classification, IsMobile): ``None``
    leaves the classification out, as a tenant without that field would."""
    text = start.strftime("%Y-%m-%d %H:%M:%S")
    record: dict[str, Any] = {
        "CallId": call_id,
        "UserName": user_name,
        "StartTime": text,
        "TimeStamp": text,
        "Direction": outgoing,
        "ANum": own_number if outgoing else number,
        "BNum": number if outgoing else own_number,
        "Duration": seconds,
        "EndResult": 0,
        "RecordingIds": list(recordings),
        "IsMobile": mobile,
    }
    if classification is not None:
        record["Classification"] = classification
    if modified is not None:
        record["$modified"] = modified.strftime("%Y-%m-%d %H:%M:%S")
    return record


def enreach_users(*people: tuple[str, str, str | None]) -> dict[str, list[dict[str, Any]]]:
    """Emulator data for Enreach users given as (id, login e-mail, mobile number): the users
    resource's records and the ``Default`` directory's entries (which carry the numbers)."""
    return {
        "users": [
            {"Id": i, "UserName": name, "FirstName": name.split("@")[0], "LastName": "Test"} for i, name, _ in people
        ],
        "directory": [
            {"Id": i, "Email": name, "MobileNumber": mobile, "WorkNumber": None} for i, name, mobile in people
        ],
    }


def clear_app_caches() -> None:
    """Forget the settings and the objects the function runtimes built from them."""
    from bridge import rows as bridge_rows
    from bridge.settings import get_settings
    from call_sync import runtime as call_runtime
    from callbacks import runtime as callback_runtime
    from presence_sync import runtime as presence_runtime
    from routing import runtime as routing_runtime

    for cached in (
        get_settings,
        routing_runtime.dataverse_client,
        routing_runtime.router,
        routing_runtime.checkpoint_store,
        bridge_rows.run_status,
        bridge_rows.config_rows,
        bridge_rows.setting_rows,
        call_runtime.enreach_client,
        call_runtime.call_lookup,
        call_runtime.parking_store,
        call_runtime.transcript_store,
        presence_runtime.presence_sync,
        callback_runtime.callback_sync,
    ):
        cached.cache_clear()
    from bridge import prefetch

    prefetch._reset()  # a new "process": the next routing call or warm-up prefetches its token again


@contextmanager
def serving_app(monkeypatch: pytest.MonkeyPatch, settings: Mapping[str, str]) -> Iterator[LocalFunctionsHost]:
    """The app's functions on a loopback port, configured by these app settings as the host would be;
    the runtimes are rebuilt from them, and forgotten again afterwards."""
    from function_app import build_app
    from sandbox.host import LocalFunctionsHost

    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    clear_app_caches()
    app = build_app()  # the functions of the jobs these settings switch on (BRIDGE_JOBS), as the host would
    host = LocalFunctionsHost(app, port=0).start()
    try:
        yield host
    finally:
        host.stop()
        clear_app_caches()
