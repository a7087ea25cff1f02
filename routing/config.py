"""The routing job's settings section: the SmartRouting credential, the rules, the time budget, the
lookup cache and the phone index timer.

``ROUTING_API_KEY``, ``ROUTING_BASIC_USER``, ``ROUTING_BASIC_PASSWORD``, ``ROUTING_RULES``,
``ROUTING_TIME_BUDGET_SECONDS``, ``ROUTING_CACHE_TTL_SECONDS``, ``ROUTING_MAX_LOOKUPS`` and
``PHONE_INDEX_SCHEDULE`` (README, settings table). The phone columns and the default region are
the matching's section (``matching/config.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Getter, schedule, seconds, whole_number

from .rules import DEFAULT_RULES, Rule, RuleError, parse_rules

__all__ = ["NAMES", "RoutingConfig", "parse_routing"]

NAMES = (
    "ROUTING_API_KEY",
    "ROUTING_BASIC_USER",
    "ROUTING_BASIC_PASSWORD",
    "ROUTING_RULES",
    "ROUTING_TIME_BUDGET_SECONDS",
    "ROUTING_CACHE_TTL_SECONDS",
    "ROUTING_MAX_LOOKUPS",
    "PHONE_INDEX_SCHEDULE",
)
DEFAULT_INDEX_SCHEDULE = "0 */5 * * * *"


@dataclass(frozen=True)
class RoutingConfig:
    api_key: str | None = field(default=None, repr=False)
    basic_user: str | None = None
    basic_password: str | None = field(default=None, repr=False)
    rules: tuple[Rule, ...] = DEFAULT_RULES
    time_budget_seconds: float = 1.5
    cache_ttl_seconds: float = 60.0
    max_lookups: int = 64
    index_schedule: str = DEFAULT_INDEX_SCHEDULE


def parse_routing(get: Getter, problems: list[str]) -> RoutingConfig:
    """Read the section with ``get(name)``; append one line per problem."""
    api_key = get("ROUTING_API_KEY")
    basic_user, basic_password = get("ROUTING_BASIC_USER"), get("ROUTING_BASIC_PASSWORD")
    if bool(basic_user) != bool(basic_password):
        problems.append("set both ROUTING_BASIC_USER and ROUTING_BASIC_PASSWORD, or neither")
    if not api_key and not basic_user:
        problems.append(
            "ROUTING_API_KEY is not set: set it (Enreach sends it as X-Benemen-APIKey) "
            "or set ROUTING_BASIC_USER and ROUTING_BASIC_PASSWORD"
        )
    if api_key and len(api_key) < 16:
        problems.append("ROUTING_API_KEY is too short: use at least 16 random characters")
    rules: tuple[Rule, ...] = ()
    try:
        rules = parse_rules(get("ROUTING_RULES"))
    except RuleError as error:
        problems.append(str(error))
    return RoutingConfig(
        api_key=api_key,
        basic_user=basic_user,
        basic_password=basic_password,
        rules=rules,
        time_budget_seconds=seconds(get, problems, "ROUTING_TIME_BUDGET_SECONDS", 1.5, 0, 4.5),
        cache_ttl_seconds=seconds(get, problems, "ROUTING_CACHE_TTL_SECONDS", 60.0, -1, 86400),
        max_lookups=whole_number(get, problems, "ROUTING_MAX_LOOKUPS", 64, 1, 1000),
        index_schedule=schedule(get, problems, "PHONE_INDEX_SCHEDULE", DEFAULT_INDEX_SCHEDULE),
    )
