"""The presence sync's settings section: the Dataverse webhook's key, the presence mapping, echo
and call expiry, the presence after a call, and the reconciliation and polling timers.

``PRESENCE_WEBHOOK_KEY``, ``PRESENCE_MAPPING``, ``PRESENCE_IDS``, ``PRESENCE_ECHO_TTL_SECONDS``,
``PRESENCE_MAX_CALL_MINUTES``, ``PRESENCE_AFTER_CALL``, ``PRESENCE_RECONCILE_SCHEDULE``,
``PRESENCE_POLL_SCHEDULE`` and ``PRESENCE_POLLING`` (README, settings table). The Enreach
notification secret is the Enreach section's (``enreach/config.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Getter, schedule, seconds, whole_number

from .mapping import BASE_STATUS, MappingError, PresenceMapping, parse_mapping

__all__ = ["NAMES", "ROW_OPTIONS", "PresenceConfig", "parse_presence"]

NAMES = (
    "PRESENCE_WEBHOOK_KEY",
    "PRESENCE_MAPPING",
    "PRESENCE_IDS",
    "PRESENCE_ECHO_TTL_SECONDS",
    "PRESENCE_MAX_CALL_MINUTES",
    "PRESENCE_AFTER_CALL",
    "PRESENCE_RECONCILE_SCHEDULE",
    "PRESENCE_POLL_SCHEDULE",
    "PRESENCE_POLLING",
)
# The business options an administrator may set as rows in the Enreach Bridge app (enr_bridgesetting,
# named as the app setting); the running presence sync takes them at each configuration refresh.
ROW_OPTIONS = ("PRESENCE_AFTER_CALL", "PRESENCE_MAPPING")


@dataclass(frozen=True)
class PresenceConfig:
    webhook_key: str = field(repr=False)
    mapping: PresenceMapping
    echo_ttl_seconds: float = 30.0
    max_call_minutes: int = 240
    after_call: str = "AVAILABLE"  # base presence after a call with nothing saved
    reconcile_schedule: str = "0 */5 * * * *"
    poll_schedule: str = "0 */2 * * * *"
    polling: str = "auto"  # auto: on while no availability notification type is mapped

    def polling_enabled(self, availability_notifications_mapped: bool) -> bool:
        """``sync_presence`` polls Enreach when PRESENCE_POLLING is on, or auto and Enreach sends no
        availability notifications (none mapped in ``ENREACH_FIELD_MAP.events.availability_changed``)."""
        if self.polling != "auto":
            return self.polling == "on"
        return not availability_notifications_mapped


def parse_presence(get: Getter, problems: list[str]) -> PresenceConfig:
    """Read the section with ``get(name)``; append one line per problem."""
    key = get("PRESENCE_WEBHOOK_KEY") or ""
    if not key:
        problems.append(
            "PRESENCE_WEBHOOK_KEY is not set: set 16+ random characters; the Dataverse webhook "
            "for msdyn_agentstatus sends it in the X-Presence-Key header"
        )
    elif len(key) < 16:
        problems.append("PRESENCE_WEBHOOK_KEY is too short: use at least 16 random characters")
    mapping: PresenceMapping | None = None
    try:
        mapping = parse_mapping(get("PRESENCE_MAPPING"), get("PRESENCE_IDS"))
    except MappingError as error:
        problems.append(str(error))
        mapping = parse_mapping(None, None)
    after_call = (get("PRESENCE_AFTER_CALL") or "AVAILABLE").upper()
    if after_call not in BASE_STATUS:
        problems.append(
            f"PRESENCE_AFTER_CALL must be an Omnichannel base presence: {', '.join(BASE_STATUS)} (got {after_call!r})"
        )
        after_call = "AVAILABLE"
    polling = (get("PRESENCE_POLLING") or "auto").lower()
    if polling not in ("auto", "on", "off"):
        problems.append(
            f"PRESENCE_POLLING must be auto, on or off (got {polling!r}); auto polls while Enreach sends no "
            "availability notifications (ENREACH_FIELD_MAP.events.availability_changed unmapped)"
        )
        polling = "auto"
    return PresenceConfig(
        webhook_key=key,
        mapping=mapping,
        echo_ttl_seconds=seconds(get, problems, "PRESENCE_ECHO_TTL_SECONDS", 30.0, 0, 600),
        max_call_minutes=whole_number(get, problems, "PRESENCE_MAX_CALL_MINUTES", 240, 1, 1440),
        after_call=after_call,
        reconcile_schedule=schedule(get, problems, "PRESENCE_RECONCILE_SCHEDULE", "0 */5 * * * *"),
        poll_schedule=schedule(get, problems, "PRESENCE_POLL_SCHEDULE", "0 */2 * * * *"),
        polling=polling,
    )
