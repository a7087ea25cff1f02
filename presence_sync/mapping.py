"""Omnichannel base presence <-> Enreach user availability, as data (overridable from settings).

Product guide's table: AVAILABLE=Available, BUSY=Busy, BUSY_DO_NOT_DISTURB=DND,
OFFLINE=OffWork, AWAY=Away. The values are Enreach availability *names*; the numbers
Enreach's API uses for them (EventTypeIDs) are vendor facts and live in the Enreach
mapping (``ENREACH_FIELD_MAP.availability.event_types``). Custom Omnichannel presences map
through their base status (``msdyn_presence.msdyn_basepresencestatus``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "BASE_STATUS",
    "BUILT_IN_PRESENCE_IDS",
    "DEFAULT_TO_ENREACH",
    "MappingError",
    "PresenceMapping",
    "parse_mapping",
]

# msdyn_basepresencestatus values
BASE_STATUS = {
    "AVAILABLE": 192360000,
    "BUSY": 192360001,
    "BUSY_DO_NOT_DISTURB": 192360002,
    "AWAY": 192360003,
    "OFFLINE": 192360004,
}
DEFAULT_TO_ENREACH = {
    "AVAILABLE": "Available",
    "BUSY": "Busy",
    "BUSY_DO_NOT_DISTURB": "DND",
    "OFFLINE": "OffWork",
    "AWAY": "Away",
}
BUILT_IN_PRESENCE_IDS = {
    "AVAILABLE": "f523f628-c07a-e811-8162-000d3aa11f50",
    "BUSY": "efdeb843-c07a-e811-8162-000d3aa11f50",
    "BUSY_DO_NOT_DISTURB": "08971864-c07a-e811-8162-000d3aa11f50",
    "AWAY": "3dacae76-c07a-e811-8162-000d3aa11f50",
    "OFFLINE": "70139190-c07a-e811-8162-000d3aa11f50",
}
ENREACH_AVAILABILITIES = ("Available", "Busy", "Away", "BRB", "DND", "OffWork")


class MappingError(ValueError):
    pass


@dataclass(frozen=True)
class PresenceMapping:
    to_enreach: Mapping[str, str]  # base name -> Enreach availability name
    presence_ids: Mapping[str, str]  # base name -> the msdyn_presenceid set in Omnichannel

    def enreach_availability(self, base_value: int) -> str | None:
        name = next((n for n, v in BASE_STATUS.items() if v == base_value), None)
        return self.to_enreach.get(name) if name else None

    def base_for_enreach(self, availability: str) -> str | None:
        return next((name for name, value in self.to_enreach.items() if value == availability), None)

    def presence_for_enreach(self, availability: str) -> str | None:
        name = self.base_for_enreach(availability)
        return self.presence_ids.get(name) if name else None

    @property
    def dnd_presence(self) -> str:
        return self.presence_ids["BUSY_DO_NOT_DISTURB"]


def parse_mapping(mapping_text: str | None, ids_text: str | None) -> PresenceMapping:
    """PRESENCE_MAPPING: {"AVAILABLE": "Available", ...} (Enreach availability per base presence);
    PRESENCE_IDS: {"AVAILABLE": "<msdyn_presenceid>", ...} (what Enreach changes set)."""
    to_enreach = dict(DEFAULT_TO_ENREACH)
    ids = dict(BUILT_IN_PRESENCE_IDS)
    for name, text, target in (("PRESENCE_MAPPING", mapping_text, to_enreach), ("PRESENCE_IDS", ids_text, ids)):
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise MappingError(f"{name} is not valid JSON: {exc}") from exc
        if not isinstance(value, dict) or set(value) - set(BASE_STATUS):
            raise MappingError(f"{name} must be a JSON object with keys among {', '.join(BASE_STATUS)}")
        target.update(value)
    for base, availability in to_enreach.items():
        if availability not in ENREACH_AVAILABILITIES:
            raise MappingError(
                f"PRESENCE_MAPPING[{base}] must be an Enreach availability: {', '.join(ENREACH_AVAILABILITIES)}"
            )
    if len(set(to_enreach.values())) != len(to_enreach):
        raise MappingError(
            "PRESENCE_MAPPING maps two base presences to one Enreach availability: the way back is ambiguous"
        )
    for base, presence in ids.items():
        if not isinstance(presence, str) or len(presence) != 36:
            raise MappingError(f"PRESENCE_IDS[{base}] must be a msdyn_presenceid GUID")
    return PresenceMapping(to_enreach, {k: v.lower() for k, v in ids.items()})
