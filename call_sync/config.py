"""The call sync's own settings section, parsed here and read once into ``Settings.call_sync``.

``CALL_SYNC_PARK_DAYS``, ``CALL_START_MARGIN_SECONDS``, ``CALL_SYNC_INITIAL_LOOKBACK_HOURS``,
``CALL_SYNC_PRIVATE_CALLS``, ``CALL_SYNC_RECORDING_LINK`` and ``CALL_SYNC_ENREACH_REQUEST_BUDGET``
(README, settings table).
Kept cheap to import: ``core.settings`` loads it while reading the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.settings import whole_number

__all__ = ["NAMES", "PRIVATE_ACTIONS", "CallSyncConfig", "parse_config"]

NAMES = (
    "CALL_SYNC_PARK_DAYS",
    "CALL_START_MARGIN_SECONDS",
    "CALL_SYNC_INITIAL_LOOKBACK_HOURS",
    "CALL_SYNC_PRIVATE_CALLS",
    "CALL_SYNC_RECORDING_LINK",
    "CALL_SYNC_ENREACH_REQUEST_BUDGET",
)
PRIVATE_ACTIONS = ("delete", "anonymise")


@dataclass(frozen=True)
class CallSyncConfig:
    park_days: int = 7
    start_margin_seconds: int = 120
    initial_lookback_hours: int = 24
    private_calls: str = "delete"  # "delete" or "anonymise"
    recording_link: str | None = None  # None: off; "id": the recording id; else a URL template
    # Enreach requests one timer run may send (per-user queries stop there and the next run goes
    # on from the next user, the checkpoint held behind the window); 0 = no limit
    enreach_request_budget: int = 1000


def parse_config(get: Callable[[str], str | None], problems: list[str]) -> CallSyncConfig:
    """Read the section with ``get(name)`` (None when unset); append one line per problem."""

    def integer(name: str, default: int, low: int, high: int) -> int:
        return whole_number(get, problems, name, default, low, high)

    private = (get("CALL_SYNC_PRIVATE_CALLS") or "delete").lower().replace("anonymize", "anonymise")
    if private not in PRIVATE_ACTIONS:
        problems.append(f"CALL_SYNC_PRIVATE_CALLS must be delete or anonymise (got {private!r})")
        private = "delete"
    link = get("CALL_SYNC_RECORDING_LINK")
    if link is not None and link.lower() == "off":
        link = None
    elif link is not None and link.lower() == "id":
        link = "id"
    elif link is not None and (not link.startswith("https://") or "{recording_id}" not in link):
        problems.append(
            "CALL_SYNC_RECORDING_LINK must be off, id, or an https:// address holding {recording_id}, "
            f"e.g. https://recordings.example.com/{{recording_id}} (got {link!r})"
        )
        link = None
    return CallSyncConfig(
        park_days=integer("CALL_SYNC_PARK_DAYS", 7, 1, 90),
        start_margin_seconds=integer("CALL_START_MARGIN_SECONDS", 120, 0, 3600),
        initial_lookback_hours=integer("CALL_SYNC_INITIAL_LOOKBACK_HOURS", 24, 1, 744),
        private_calls=private,
        recording_link=link,
        enreach_request_budget=_budget(get, problems),
    )


def _budget(get: Callable[[str], str | None], problems: list[str]) -> int:
    value = whole_number(get, problems, "CALL_SYNC_ENREACH_REQUEST_BUDGET", 1000, 0, 1_000_000)
    if 0 < value < 10:
        problems.append(
            "CALL_SYNC_ENREACH_REQUEST_BUDGET must be 0 (no limit) or at least 10: the users list "
            f"and a user's calls take a few requests (got {value})"
        )
        return 1000
    return value
