"""The routing webhook's own settings section, parsed here and read once into ``Settings.routing``.

``ROUTING_EXPLAIN_KEY`` (README, settings table). Kept cheap to import: ``core.settings`` loads it
while reading the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["NAMES", "RoutingConfig", "parse_config"]

NAMES = ("ROUTING_EXPLAIN_KEY",)


@dataclass(frozen=True)
class RoutingConfig:
    # ``?explain=true`` shows customers' names for any number: an operator feature, off while unset,
    # answered only to a request carrying this key in the X-Explain-Key header (besides the routing key).
    explain_key: str | None = None


def parse_config(get: Callable[[str], str | None], problems: list[str]) -> RoutingConfig:
    """Read the section with ``get(name)`` (None when unset); append one line per problem."""
    key = get("ROUTING_EXPLAIN_KEY")
    if key is not None and len(key) < 16:
        problems.append("ROUTING_EXPLAIN_KEY is too short: use at least 16 random characters (or leave it unset: off)")
    if key is not None and key == get("ROUTING_API_KEY"):
        problems.append("ROUTING_EXPLAIN_KEY must differ from ROUTING_API_KEY: explain is for operators, not Enreach")
    return RoutingConfig(explain_key=key)
