"""Phone number normalisation: every format people type, one E.164 answer, never a guess.

A stored number matches a caller only when both normalise to the same E.164 number.
Trailing-digit matching (the vendor guide's fallback) is never used: two numbers that
share their last seven digits are different customers.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

__all__ = ["looks_like_e164", "stored_forms", "to_e164"]

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def looks_like_e164(text: str) -> bool:
    return bool(_E164.match(text))


def to_e164(raw: str | None, region: str) -> str | None:
    """``+358501234567`` for ``050-123 4567`` (region FI), ``(09) 123 456``, ``00358 50 ...``; None if not a number."""
    if not raw or not isinstance(raw, str) or len(raw) > 64:
        return None
    text = raw.strip()
    if not re.search(r"\d", text) or re.search(r"[A-Za-z]", text.split("ext")[0].split("#")[0]):
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    result = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return result if looks_like_e164(result) else None


@lru_cache(maxsize=4096)  # pure, and ~0.5 ms: each form is parsed back to check it
def stored_forms(e164: str, region: str) -> tuple[str, ...]:
    """The exact strings a person is likely to have stored for ``e164``, for ``eq`` queries
    while the phone index is not there yet: E.164, international formatting, the 00 and
    bare-country-code forms and, for numbers of the home region, national formatting.
    Other typed variants (odd spacing, brackets) are found through the phone index."""
    parsed = phonenumbers.parse(e164, None)
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    forms = [e164, international, international.replace(" ", ""), "00" + e164[1:], e164[1:]]
    if parsed.country_code == phonenumbers.country_code_for_region(region):
        national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        forms += [national, re.sub(r"\D", "", national), national.replace(" ", "-")]
    # Keep only forms that mean this very number when read back in the home region: "358100000"
    # is a local number in Finland, not +358 100000, and must never match this caller.
    return tuple(form for form in dict.fromkeys(forms) if to_e164(form, region) == e164)
