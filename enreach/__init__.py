"""Enreach REST API client: discovery, Basic auth, users, calls, availability, callbacks."""

from ._client import (
    Availability,
    EnreachAuthError,
    EnreachCall,
    EnreachClient,
    EnreachError,
    EnreachEvent,
    EnreachUnavailable,
    EnreachUser,
    EventError,
    discover_api_url,
    format_time,
    parse_event,
    parse_time,
    users_by_email,
)

__all__ = [
    "Availability",
    "EnreachAuthError",
    "EnreachCall",
    "EnreachClient",
    "EnreachError",
    "EnreachEvent",
    "EnreachUnavailable",
    "EnreachUser",
    "EventError",
    "discover_api_url",
    "format_time",
    "parse_event",
    "parse_time",
    "users_by_email",
]
