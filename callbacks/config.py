"""The callback sync's own settings section (``Settings.callbacks``), parsed here.

``CALLBACK_SYNC_SCHEDULE``, ``CALLBACK_MODE``, ``CALLBACK_QUEUES``, ``CALLBACK_CLOSE_IN_ENREACH``,
``CALLBACK_INITIAL_LOOKBACK_HOURS``; shared with the call sync: ``DEFAULT_CRM_ASSIGNEE`` and
``CALL_SYNC_BATCH_SIZE`` (README, settings table). The job itself is switched on by naming
``callbacks`` in ``BRIDGE_JOBS`` (off by default). Kept cheap to import: the composition root
loads it while reading the settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.config import Getter, guid, schedule, whole_number
from core.ids import canonical_guid

__all__ = ["DEFAULT_SCHEDULE", "MODES", "NAMES", "CallbacksConfig", "parse_callbacks"]

NAMES = (
    "CALLBACK_SYNC_SCHEDULE",
    "CALLBACK_MODE",
    "CALLBACK_QUEUES",
    "CALLBACK_CLOSE_IN_ENREACH",
    "CALLBACK_INITIAL_LOOKBACK_HOURS",
    "DEFAULT_CRM_ASSIGNEE",
    "CALL_SYNC_BATCH_SIZE",
)
# the product guide's three ways: polling every minute, webhook, or webhook backed by polling
MODES = ("poll", "notify", "both")
DEFAULT_SCHEDULE = "0 * * * * *"


@dataclass(frozen=True)
class CallbacksConfig:
    schedule: str = DEFAULT_SCHEDULE
    mode: str = "both"
    # Enreach callback list id or name (lower-case), or "*" for any other -> Dataverse queue id
    queues: Mapping[str, str] = field(default_factory=dict)
    # Enreach publishes no write API for callback requests: off until an operator has checked it
    close_in_enreach: bool = False
    initial_lookback_hours: int = 168
    default_assignee: str | None = None  # DEFAULT_CRM_ASSIGNEE: owner when no agent is mapped
    batch_size: int = 100  # CALL_SYNC_BATCH_SIZE: requests per $batch, numbers per customer lookup

    @property
    def polling(self) -> bool:
        return self.mode in ("poll", "both")

    @property
    def notifications(self) -> bool:
        return self.mode in ("notify", "both")


def _switch(get: Getter, problems: list[str], name: str) -> bool:
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
        queue_id = canonical_guid(queue)
        if not str(name).strip() or queue_id is None:
            problems.append(f"CALLBACK_QUEUES[{name!r}] must be a Dataverse queue id (a GUID)")
            continue
        queues[str(name).strip().lower()] = queue_id
    return queues


def parse_callbacks(get: Getter, problems: list[str]) -> CallbacksConfig:
    """Read the section with ``get(name)`` (None when unset); append one line per problem."""
    mode = (get("CALLBACK_MODE") or "both").strip().lower()
    if mode not in MODES:
        problems.append(
            f"CALLBACK_MODE must be poll, notify or both (got {mode!r}); both: notifications, backed up by the timer"
        )
        mode = "both"
    return CallbacksConfig(
        schedule=schedule(get, problems, "CALLBACK_SYNC_SCHEDULE", DEFAULT_SCHEDULE),
        mode=mode,
        queues=_queues(get("CALLBACK_QUEUES"), problems),
        close_in_enreach=_switch(get, problems, "CALLBACK_CLOSE_IN_ENREACH"),
        initial_lookback_hours=whole_number(get, problems, "CALLBACK_INITIAL_LOOKBACK_HOURS", 168, 1, 744),
        default_assignee=guid(
            get, problems, "DEFAULT_CRM_ASSIGNEE", "the systemuserid of the user who owns unmapped calls"
        ),
        batch_size=whole_number(get, problems, "CALL_SYNC_BATCH_SIZE", 100, 1, 500),
    )
