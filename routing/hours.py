"""Weekly opening hours in an IANA time zone, with holidays: the ``hours``/``outside_hours`` rule conditions.

``{"timezone": "Europe/Helsinki", "weekly": {"mon-fri": ["08:00-16:00"], "sat": ["10:00-14:00"]},
"holidays": ["2026-12-24", "2026-12-25"]}``: open when the local wall-clock time (daylight saving
included, through ``zoneinfo``) falls in one of the day's ranges and the local date is not a
holiday. A range ends before its end minute; ``24:00`` ends at midnight.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAYS", "OpeningHours", "parse_hours"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class OpeningHours:
    timezone: str
    weekly: Mapping[int, tuple[tuple[int, int], ...]]  # weekday (Monday 0) -> [start, end) in minutes
    holidays: frozenset[date]

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone))
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.weekly.get(local.weekday(), ()))

    def describe(self, moment: datetime) -> str:
        local = moment.astimezone(ZoneInfo(self.timezone))
        holiday = " (a holiday)" if local.date() in self.holidays else ""
        return f"{local:%a %Y-%m-%d %H:%M} {self.timezone}{holiday}"


def _days(key: str, where: str) -> list[int]:
    first, _, last = key.strip().lower().partition("-")
    if first not in DAYS or (last and last not in DAYS):
        raise ValueError(f"{where}: {key!r} is not a day or a range of days such as mon-fri ({', '.join(DAYS)})")
    start, end = DAYS.index(first), DAYS.index(last or first)
    if end < start:
        raise ValueError(f"{where}: {key!r} runs backwards; write it as mon-fri, not fri-mon")
    return list(range(start, end + 1))


def _range(text: Any, where: str) -> tuple[int, int]:
    match = _RANGE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{where}: {text!r} is not a time range such as 08:00-16:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or end <= start:
        raise ValueError(f"{where}: {text!r} must run forwards within one day (00:00-24:00)")
    return start, end


def parse_hours(value: Any, where: str) -> OpeningHours:
    """Check one ``hours`` object; errors name the field (``where`` names the rule and key)."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be an object with timezone, weekly and optional holidays")
    unknown = set(value) - {"timezone", "weekly", "holidays"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use timezone, weekly, holidays")
    zone = value.get("timezone")
    try:
        if not isinstance(zone, str) or not zone:
            raise ZoneInfoNotFoundError(zone)
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{where}.timezone: {zone!r} is not an IANA time zone such as Europe/Helsinki") from None
    weekly_in = value.get("weekly")
    if not isinstance(weekly_in, dict) or not weekly_in:
        raise ValueError(f'{where}.weekly: must map days to time ranges, e.g. {{"mon-fri": ["08:00-16:00"]}}')
    weekly: dict[int, list[tuple[int, int]]] = {}
    for key, ranges in weekly_in.items():
        field = f"{where}.weekly[{key!r}]"
        if isinstance(ranges, str):
            ranges = [ranges]
        if not isinstance(ranges, list):
            raise ValueError(f"{field}: must be a list of time ranges such as 08:00-16:00")
        parsed = [_range(r, field) for r in ranges]
        for day in _days(str(key), field):
            weekly.setdefault(day, []).extend(parsed)
    holidays_in = value.get("holidays", [])
    if not isinstance(holidays_in, list):
        raise ValueError(f"{where}.holidays: must be a list of dates such as 2026-12-24")
    holidays = set()
    for item in holidays_in:
        try:
            if not isinstance(item, str) or len(item) != 10:
                raise ValueError(item)
            holidays.add(date.fromisoformat(item))
        except ValueError:
            raise ValueError(f"{where}.holidays: {item!r} is not a date such as 2026-12-24") from None
    return OpeningHours(zone, {d: tuple(sorted(r)) for d, r in weekly.items()}, frozenset(holidays))
