"""The callback sync's own settings section, parsed here and read once into ``Settings.callbacks``.

``CALLBACKS_ENABLED``, ``CALLBACK_SYNC_SCHEDULE``, ``CALLBACK_MODE``, ``CALLBACK_QUEUES``,
``CALLBACK_CLOSE_IN_ENREACH`` and ``CALLBACK_INITIAL_LOOKBACK_HOURS`` (README, settings table).
Kept cheap to import: ``core.settings`` loads it while reading the settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from core.ids import canonical_guid
from core.settings import whole_number

__all__ = ["MODES", "NAMES", "CallbacksConfig", "parse_config"]

NAMES = (
    "CALLBACKS_ENABLED",
    "CALLBACK_SYNC_SCHEDULE",
    "CALLBACK_MODE",
    "CALLBACK_QUEUES",
    "CALLBACK_CLOSE_IN_ENREACH",
    "CALLBACK_INITIAL_LOOKBACK_HOURS",
)
# the product guide's three ways: polling every minute, webhook, or webhook backed by polling
MODES = ("poll", "notify", "both")


@dataclass(frozen=True)
class CallbacksConfig:
    enabled: bool = False
    schedule: str = "0 * * * * *"
    mode: str = "both"
    # Enreach callback list id or name (lower-case), or "*" for any other -> Dataverse queue id
    queues: Mapping[str, str] = field(default_factory=dict)
    # Enreach publishes no write API for callback requests: off until an operator has checked it
    close_in_enreach: bool = False
    initial_lookback_hours: int = 168

    @property
    def polling(self) -> bool:
        return self.enabled and self.mode in ("poll", "both")

    @property
    def notifications(self) -> bool:
        return self.enabled and self.mode in ("notify", "both")


def _switch(get: Callable[[str], str | None], problems: list[str], name: str) -> bool:
    text = (get(name) or "off").strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text not in ("off", "false", "0", "no"):
        problems.append(f"{name} must be on or off (got {text!r})")
    return False


def _queues(text: str | None, problems: list[str]) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        problems.append(
            'CALLBACK_QUEUES must be JSON mapping an Enreach callback list (id or name, or "*" for any '
            'other) to a Dataverse queue id, e.g. {"Sales callbacks": "<queueid GUID>", "*": "<queueid GUID>"}'
        )
        return {}
    queues: dict[str, str] = {}
    for name, queue in value.items():
        guid = canonical_guid(queue)
        if not str(name).strip() or guid is None:
            problems.append(f"CALLBACK_QUEUES[{name!r}] must be a Dataverse queue id (a GUID)")
            continue
        queues[str(name).strip().lower()] = guid
    return queues


def parse_config(get: Callable[[str], str | None], problems: list[str]) -> CallbacksConfig:
    """Read the section with ``get(name)`` (None when unset); append one line per problem."""
    enabled = _switch(get, problems, "CALLBACKS_ENABLED")
    schedule = get("CALLBACK_SYNC_SCHEDULE") or ""
    if not schedule:
        problems.append(
            "CALLBACK_SYNC_SCHEDULE is not set: set an NCRONTAB schedule, e.g. 0 * * * * * (every minute); "
            "the Functions host needs it even while CALLBACKS_ENABLED is off"
        )
    elif len(schedule.split()) != 6:
        problems.append(f"CALLBACK_SYNC_SCHEDULE must have six NCRONTAB fields, e.g. 0 * * * * * (got {schedule!r})")
    mode = (get("CALLBACK_MODE") or "both").strip().lower()
    if mode not in MODES:
        problems.append(
            f"CALLBACK_MODE must be poll, notify or both (got {mode!r}); both: notifications, backed up by the timer"
        )
        mode = "both"
    return CallbacksConfig(
        enabled=enabled,
        schedule=schedule,
        mode=mode,
        queues=_queues(get("CALLBACK_QUEUES"), problems),
        close_in_enreach=_switch(get, problems, "CALLBACK_CLOSE_IN_ENREACH"),
        initial_lookback_hours=whole_number(get, problems, "CALLBACK_INITIAL_LOOKBACK_HOURS", 168, 1, 744),
    )
