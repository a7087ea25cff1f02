"""Keep phone numbers, e-mail addresses and secrets out of logs and telemetry: show enough to
recognise a number, not to dial it; never an address or a key.

``mask_phones_in`` masks numbers only; ``mask_sensitive`` (what every exported record and span
goes through) also masks e-mail addresses, credentials in ``key=value`` / ``Bearer`` form and
the values registered with ``register_secret`` (the app's own keys, from its settings).
"""

from __future__ import annotations

import re
import threading

__all__ = ["mask_email", "mask_phone", "mask_phones_in", "mask_sensitive", "register_secret"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Identifiers that are not numbers: GUIDs, long hexadecimal runs (trace ids, ETags, hashes), and
# ISO dates with their time.
_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_HEX = r"(?<![0-9A-Za-z])(?=[0-9A-Fa-f]*[A-Fa-f])(?=[0-9A-Fa-f]*\d)[0-9A-Fa-f]{16,}(?![0-9A-Za-z])"
_TIMESTAMP = r"(?<!\d)\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?!\d)"
# A number-like run: an optional + (URL-encoded %2B inside a logged URL), a digit not glued to
# another digit, then digits and the usual separators. A letter beside it does not protect it
# (``+358501234567x``); what it means is decided in ``_mask_number``.
_NUMBER = r"(?:\+|%2[Bb])?(?<![\d.])\d[\d \-().\u00a0]{5,}\d(?!\d)"
_TOKENS = re.compile(rf"(?P<guid>{_GUID})|(?P<hex>{_HEX})|(?P<date>{_TIMESTAMP})|(?P<number>{_NUMBER})")
_BARE_DIGITS_KEPT = 9  # a bare run of up to 9 digits (1048577 bytes, an id) is a quantity, not a number

_EMAIL = re.compile(r"[A-Za-z0-9._+-]+(?:@|%40)(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})")
# Credentials written as name=value or name: value (connection strings, query strings, headers);
# the short generic names (code, key, sig: function keys, SAS signatures) only as name=value.
_CREDENTIAL = re.compile(
    r"(?i)(?P<name>\b(?:account ?key|shared ?access ?key|api[-_]?key|x-benemen-apikey|secret(?:[-_]?key)?"
    r"|client[-_]?secret|password|passwd|pwd|access[-_]?token|refresh[-_]?token|token|authorization)"
    r"[\"']?\s*[=:]\s*[\"']?|\b(?:code|key|sig)=)(?P<value>(?:Basic |Bearer )?[^\s&;,\"'<>]{4,})"
)
_BEARER = re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")

_secrets_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Mask this exact value (a key, a password) wherever ``mask_sensitive`` sees it. Values
    shorter than 8 characters are ignored: masking them would blank ordinary words."""
    global _secrets
    if not value or len(value) < 8:
        return
    with _secrets_lock:
        if value not in _secrets:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


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


def _mask_number(found: str) -> str:
    if _DATE.fullmatch(found):
        return found
    digits = sum(c.isdigit() for c in found)
    if digits < 7:
        return found
    international = found.startswith(("+", "%2B", "%2b"))
    if not international and re.fullmatch(r"\d+\.\d+", found):  # a decimal figure, not a number
        return found
    separated = not found.isdigit() and not international
    national = found.startswith("0")
    if international or national or separated or digits > _BARE_DIGITS_KEPT:
        return mask_phone(found)
    return found


def mask_phones_in(text: str) -> str:
    """Mask every phone-number-like run in free text: seven or more digits written with a +
    (even glued to a letter: ``+358501234567x``), a leading 0, or separators; or a bare run of
    ten or more digits. Dates, GUIDs, hex ids and ordinary counts (``body of 1048577 bytes``)
    stay as they are."""

    def replace(match: re.Match[str]) -> str:
        if match.group("number") is None:
            return match.group(0)
        return _mask_number(match.group(0))

    return _TOKENS.sub(replace, text)


def mask_email(address: str) -> str:
    """``aino.virtanen@example.fi`` -> ``***@example.fi`` (the domain tells which tenant, not who)."""
    match = _EMAIL.search(address)
    return f"***@{match.group('domain')}" if match else address


def mask_sensitive(text: str) -> str:
    """Everything exported goes through this: registered secrets, credentials (``key=...``,
    ``Bearer ...``, JWTs), e-mail addresses and phone numbers masked."""
    if not text:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    text = _JWT.sub("***", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _CREDENTIAL.sub(lambda m: f"{m.group('name')}***", text)
    text = _EMAIL.sub(lambda m: f"***@{m.group('domain')}", text)
    return mask_phones_in(text)
