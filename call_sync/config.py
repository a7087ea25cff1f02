"""The call sync's own settings section (``Settings.call_sync``) and the user id sync's
(``Settings.user_ids``), parsed here.

``PHONE_CALL_SYNC_SCHEDULE``, ``CALL_DURATION_LIMIT``, ``DEFAULT_CRM_ASSIGNEE``,
``CALL_SYNC_OVERLAP_MINUTES``, ``CALL_SYNC_BATCH_SIZE``, ``CALL_SYNC_PARK_DAYS``,
``CALL_START_MARGIN_SECONDS``, ``CALL_SYNC_INITIAL_LOOKBACK_HOURS``, ``CALL_SYNC_PRIVATE_CALLS``,
``CALL_SYNC_RECORDING_LINK``, ``CALL_SYNC_ENREACH_REQUEST_BUDGET``; the follow-up, unknown-caller,
regarding and transcript options (``CALL_SYNC_FOLLOW_UPS`` ... ``CALL_SYNC_TRANSCRIPT_WAIT_HOURS``;
README, "Missed calls, unknown callers, cases and transcripts"); ``USER_ID_SYNC_SCHEDULE`` (README,
settings table).
Kept cheap to import: the composition root loads it while reading the settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.config import Getter, guid, schedule, whole_number
from core.ids import is_guid

__all__ = [
    "NAMES",
    "PRIVATE_ACTIONS",
    "ROW_OPTIONS",
    "USER_ID_NAMES",
    "CallSyncConfig",
    "UserIdSyncConfig",
    "parse_config",
    "parse_user_ids",
]

NAMES = (
    "PHONE_CALL_SYNC_SCHEDULE",
    "CALL_DURATION_LIMIT",
    "DEFAULT_CRM_ASSIGNEE",
    "CALL_SYNC_OVERLAP_MINUTES",
    "CALL_SYNC_BATCH_SIZE",
    "CALL_SYNC_PARK_DAYS",
    "CALL_START_MARGIN_SECONDS",
    "CALL_SYNC_INITIAL_LOOKBACK_HOURS",
    "CALL_SYNC_PRIVATE_CALLS",
    "CALL_SYNC_RECORDING_LINK",
    "CALL_SYNC_ENREACH_REQUEST_BUDGET",
    "CALL_SYNC_FOLLOW_UPS",
    "CALL_SYNC_FOLLOW_UP_DUE_HOURS",
    "CALL_SYNC_QUEUE_CALLS",
    "CALL_SYNC_QUEUE_MAP",
    "CALL_SYNC_UNKNOWN_CALLER_LEADS",
    "CALL_SYNC_BLOCKED_NUMBERS",
    "CALL_SYNC_REGARDING_CASE",
    "CALL_SYNC_REGARDING_OPPORTUNITY",
    "CALL_SYNC_TRANSCRIPTS",
    "CALL_SYNC_TRANSCRIPT_WAIT_HOURS",
)
USER_ID_NAMES = ("USER_ID_SYNC_SCHEDULE", "CALL_SYNC_BATCH_SIZE")
# The business options an administrator may set as rows in the Enreach Bridge app (enr_bridgesetting,
# named as the app setting; the timer reads them at the start of each run, core/setting_rows.py).
ROW_OPTIONS = (
    "DEFAULT_CRM_ASSIGNEE",
    "CALL_DURATION_LIMIT",
    "CALL_START_MARGIN_SECONDS",
    "CALL_SYNC_PRIVATE_CALLS",
    "CALL_SYNC_RECORDING_LINK",
    "CALL_SYNC_PARK_DAYS",
)
PRIVATE_ACTIONS = ("delete", "anonymise")
DEFAULT_SCHEDULE = "0 */5 * * * *"
DEFAULT_USER_ID_SCHEDULE = "0 0 * * * *"


@dataclass(frozen=True)
class CallSyncConfig:
    schedule: str = DEFAULT_SCHEDULE
    duration_limit_seconds: int = 0  # calls shorter than this are not synced
    default_assignee: str | None = None  # systemuserid owning calls of unmapped Enreach users
    overlap_minutes: int = 15
    batch_size: int = 100
    park_days: int = 7
    start_margin_seconds: int = 120
    initial_lookback_hours: int = 24
    private_calls: str = "delete"  # "delete" or "anonymise"
    recording_link: str | None = None  # None: off; "id": the recording id; else a URL template
    # Enreach requests one timer run may send (per-user queries stop there and the next run goes
    # on from the next user, the checkpoint held behind the window); 0 = no limit
    enreach_request_budget: int = 1000
    follow_ups: bool = True  # a missed incoming call opens (or adds to) the caller's one open follow-up
    follow_up_due_hours: int = 24
    queue_calls: bool = True  # missed service-queue calls (GET servicecall) become missed calls too
    queue_map: tuple[tuple[str, str], ...] = ()  # Enreach queue id (lower-cased) -> Dataverse queue id
    unknown_caller_leads: bool = False  # one lead per unknown number (alternate key enr_callernumber)
    blocked_numbers: tuple[str, ...] = ()  # never made leads (as written; normalised by the sync)
    regarding_case: bool = True  # exactly one open case: the call is regarding it
    regarding_opportunity: bool = False  # exactly one open opportunity: the call is regarding it
    transcripts: bool = False  # Completed transcripts attached to the phonecall as a note
    transcript_wait_hours: int = 24  # a Pending transcript is retried this long, then given up


@dataclass(frozen=True)
class UserIdSyncConfig:
    schedule: str = DEFAULT_USER_ID_SCHEDULE
    batch_size: int = 100


def parse_user_ids(get: Getter, problems: list[str]) -> UserIdSyncConfig:
    """The user id sync's section: its schedule and the write batch size it shares with the call sync."""
    return UserIdSyncConfig(
        schedule=schedule(get, problems, "USER_ID_SYNC_SCHEDULE", DEFAULT_USER_ID_SCHEDULE),
        batch_size=whole_number(get, problems, "CALL_SYNC_BATCH_SIZE", 100, 1, 500),
    )


def parse_config(get: Getter, problems: list[str]) -> CallSyncConfig:
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

    def switch(name: str, default: bool) -> bool:
        text = (get(name) or ("on" if default else "off")).strip().lower()
        if text in ("on", "true", "1", "yes"):
            return True
        if text in ("off", "false", "0", "no"):
            return False
        problems.append(f"{name} must be on or off (got {text!r})")
        return default

    queue_map: list[tuple[str, str]] = []
    raw_map = (get("CALL_SYNC_QUEUE_MAP") or "").strip()
    if raw_map:
        try:
            value = json.loads(raw_map)
            if not isinstance(value, dict):
                raise ValueError("not an object")
        except ValueError:
            problems.append(
                "CALL_SYNC_QUEUE_MAP must be a JSON object of Enreach queue id -> Dataverse queue id (GUID), "
                'e.g. {"6f1c...": "0b5e..."}'
            )
            value = {}
        for enreach_queue, dataverse_queue in value.items():
            if not isinstance(dataverse_queue, str) or not is_guid(dataverse_queue):
                problems.append(f"CALL_SYNC_QUEUE_MAP.{enreach_queue} must be a Dataverse queue id (a GUID)")
                continue
            queue_map.append((str(enreach_queue).strip().lower(), dataverse_queue.lower()))
    blocked = tuple(
        n.strip() for n in (get("CALL_SYNC_BLOCKED_NUMBERS") or "").replace(";", ",").split(",") if n.strip()
    )
    return CallSyncConfig(
        schedule=schedule(get, problems, "PHONE_CALL_SYNC_SCHEDULE", DEFAULT_SCHEDULE),
        duration_limit_seconds=integer("CALL_DURATION_LIMIT", 0, 0, 86400),
        default_assignee=guid(
            get, problems, "DEFAULT_CRM_ASSIGNEE", "the systemuserid of the user who owns unmapped calls"
        ),
        overlap_minutes=integer("CALL_SYNC_OVERLAP_MINUTES", 15, 0, 1440),
        batch_size=integer("CALL_SYNC_BATCH_SIZE", 100, 1, 500),
        park_days=integer("CALL_SYNC_PARK_DAYS", 7, 1, 90),
        start_margin_seconds=integer("CALL_START_MARGIN_SECONDS", 120, 0, 3600),
        initial_lookback_hours=integer("CALL_SYNC_INITIAL_LOOKBACK_HOURS", 24, 1, 744),
        private_calls=private,
        recording_link=link,
        enreach_request_budget=_budget(get, problems),
        follow_ups=switch("CALL_SYNC_FOLLOW_UPS", True),
        follow_up_due_hours=integer("CALL_SYNC_FOLLOW_UP_DUE_HOURS", 24, 1, 720),
        queue_calls=switch("CALL_SYNC_QUEUE_CALLS", True),
        queue_map=tuple(queue_map),
        unknown_caller_leads=switch("CALL_SYNC_UNKNOWN_CALLER_LEADS", False),
        blocked_numbers=blocked,
        regarding_case=switch("CALL_SYNC_REGARDING_CASE", True),
        regarding_opportunity=switch("CALL_SYNC_REGARDING_OPPORTUNITY", False),
        transcripts=switch("CALL_SYNC_TRANSCRIPTS", False),
        transcript_wait_hours=integer("CALL_SYNC_TRANSCRIPT_WAIT_HOURS", 24, 1, 720),
    )


def _budget(get: Getter, problems: list[str]) -> int:
    value = whole_number(get, problems, "CALL_SYNC_ENREACH_REQUEST_BUDGET", 1000, 0, 1_000_000)
    if 0 < value < 10:
        problems.append(
            "CALL_SYNC_ENREACH_REQUEST_BUDGET must be 0 (no limit) or at least 10: the users list "
            f"and a user's calls take a few requests (got {value})"
        )
        return 1000
    return value
