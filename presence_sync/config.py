"""The presence sync's own settings section, parsed here and read once into ``Settings.presence``.

``PRESENCE_MAX_EVENT_AGE_SECONDS`` and ``PRESENCE_TIME_BUDGET_SECONDS`` (README, settings table).
Kept cheap to import: ``core.settings`` loads it while reading the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.settings import whole_number

__all__ = ["NAMES", "PresenceConfig", "parse_config"]

NAMES = ("PRESENCE_MAX_EVENT_AGE_SECONDS", "PRESENCE_TIME_BUDGET_SECONDS")


@dataclass(frozen=True)
class PresenceConfig:
    # An Enreach notification whose Timestamp is older than this is acknowledged and not acted on
    # (a replay, or a redelivery after its moment passed: it must not put anyone in DND).
    max_event_age_seconds: int = 300
    # The presence webhooks answer within this (503 with Retry-After when the work is not done):
    # Enreach waits 5 s for an answer.
    time_budget_seconds: float = 3.0


def parse_config(get: Callable[[str], str | None], problems: list[str]) -> PresenceConfig:
    """Read the section with ``get(name)`` (None when unset); append one line per problem."""
    age = whole_number(get, problems, "PRESENCE_MAX_EVENT_AGE_SECONDS", 300, 10, 86400)
    text = get("PRESENCE_TIME_BUDGET_SECONDS") or "3"
    try:
        budget = float(text)
        if not 0.5 <= budget <= 4.5:
            raise ValueError
    except ValueError:
        problems.append(
            f"PRESENCE_TIME_BUDGET_SECONDS must be a number of seconds from 0.5 to 4.5 (got {text!r}): "
            "Enreach waits 5 s for the presence webhook's answer"
        )
        budget = 3.0
    return PresenceConfig(max_event_age_seconds=age, time_budget_seconds=budget)
