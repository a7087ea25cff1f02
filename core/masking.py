"""Keep phone numbers out of logs: show enough to recognise a number, not to dial it."""

from __future__ import annotations

import re

__all__ = ["mask_phone", "mask_phones_in"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A leading + may be URL-encoded (%2B) when a number shows up inside a logged URL.
_NUMBER_LIKE = re.compile(r"(?<![\w-])(?:\+|%2[Bb])?\d[\d \-().]{5,}\d(?![\w-])")


def mask_phone(number: str | None) -> str:
    """``+358501234567`` -> ``+3585******67``: country and first digit, then the last two."""
    if not number:
        return "<none>"
    number = re.sub(r"^%2[Bb]", "+", number.strip())
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= 4:
        return "*" * len(digits)
    prefix = "+" if number.strip().startswith("+") else ""
    return prefix + "".join(digits[:4]) + "*" * (len(digits) - 6) + "".join(digits[-2:])


def mask_phones_in(text: str) -> str:
    """Mask every number-like run of seven or more digits in free text."""

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        if _DATE.fullmatch(found) or sum(c.isdigit() for c in found) < 7:
            return found
        return mask_phone(found)

    return _NUMBER_LIKE.sub(replace, text)
