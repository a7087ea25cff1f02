"""NCRONTAB schedules as Azure Functions timer triggers read them: six fields,
``{second} {minute} {hour} {day} {month} {day-of-week}``, in UTC (the host's default time zone).

Each field takes ``*``, a number, ``a-b``, lists ``a,b``, and steps ``*/n`` / ``a-b/n``; months and
days of the week also take English names (``Jan``, ``Mon``; Sunday is 0). When both day fields
are restricted a time matches if either does (as in cron).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["Schedule", "ScheduleError", "parse_schedule"]

_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS = (  # name, low, high, names
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)


class ScheduleError(ValueError):
    """Not a six-field NCRONTAB expression; the message names the field."""


def _value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    value = names.get(text.lower()) if not text.isdigit() else int(text)
    if value is None or not low <= value <= high:
        raise ScheduleError(f"{field} field: {text!r} is not between {low} and {high}")
    return value


def _field(text: str, low: int, high: int, names: dict[str, int], field: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{field} field: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(first, low, high, names, field), _value(last, low, high, names, field)
            if start > end:
                raise ScheduleError(f"{field} field: range {body!r} runs backwards")
        else:
            start = _value(body, low, high, names, field)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # Sunday = 0
        if self.any_day or self.any_weekday:
            return moment.day in self.days and weekday in self.weekdays
        return moment.day in self.days or weekday in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        """The first matching time strictly after ``moment`` (aware; returned in UTC)."""
        t = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        raise ScheduleError(f"{self.text!r} never fires")


def parse_schedule(text: str) -> Schedule:
    parts = text.split()
    if len(parts) != 6:
        raise ScheduleError(f"{text!r}: an NCRONTAB schedule has six fields (second minute hour day month day-of-week)")
    fields = [_field(p, low, high, names, name) for p, (name, low, high, names) in zip(parts, _FIELDS, strict=True)]
    return Schedule(text, *fields, any_day=parts[3] == "*", any_weekday=parts[5] == "*")
