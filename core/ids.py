"""GUIDs as Dataverse writes them (8-4-4-4-12 hex digits): one check for settings, keys and webhooks."""

from __future__ import annotations

import re

__all__ = ["canonical_guid", "is_guid"]

_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def is_guid(value: object) -> bool:
    """True for a string that is exactly one GUID (no braces, no trailing newline)."""
    return isinstance(value, str) and _GUID.fullmatch(value) is not None


def canonical_guid(value: object) -> str | None:
    """The lower-case GUID, or None when ``value`` is not exactly one."""
    return value.lower() if isinstance(value, str) and is_guid(value) else None
