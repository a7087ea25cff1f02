"""The caller matching's settings section, shared by routing and the call sync: the default region
of local numbers and the phone columns searched.

``PHONE_DEFAULT_REGION``, ``ROUTING_PHONE_COLUMNS`` and ``ROUTING_OWNER_PHONE_COLUMN`` (README,
settings table; the ``ROUTING_`` names are kept so existing deployments keep working).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from core.config import Getter

__all__ = ["DEFAULT_PHONE_COLUMNS", "NAMES", "MatchingConfig", "parse_matching"]

NAMES = ("PHONE_DEFAULT_REGION", "ROUTING_PHONE_COLUMNS", "ROUTING_OWNER_PHONE_COLUMN")
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
DEFAULT_PHONE_COLUMNS: dict[str, tuple[str, ...]] = {
    "contact": ("telephone1", "telephone2", "telephone3", "mobilephone"),
    "account": ("telephone1", "telephone2", "telephone3"),
    "lead": ("telephone1", "telephone2", "telephone3", "mobilephone"),
}


@dataclass(frozen=True)
class MatchingConfig:
    region: str  # ISO 3166 region of numbers written without a country code
    phone_columns: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_PHONE_COLUMNS))
    owner_phone_column: str = "address1_telephone1"  # systemuser column with a user's direct number


def parse_matching(get: Getter, problems: list[str]) -> MatchingConfig:
    """Read the section with ``get(name)``; append one line per problem."""
    region = (get("PHONE_DEFAULT_REGION") or "").upper()
    if not region:
        problems.append("PHONE_DEFAULT_REGION is not set: set the ISO country of local numbers, e.g. FI")
    elif not _is_region(region):
        problems.append(f"PHONE_DEFAULT_REGION {region!r} is not a known ISO 3166 region code (e.g. FI, SE)")
    owner_column = get("ROUTING_OWNER_PHONE_COLUMN") or "address1_telephone1"
    if not _COLUMN.match(owner_column):
        problems.append(f"ROUTING_OWNER_PHONE_COLUMN must be a logical column name (got {owner_column!r})")
    phone_columns = dict(DEFAULT_PHONE_COLUMNS)
    columns_text = get("ROUTING_PHONE_COLUMNS")
    if columns_text:
        phone_columns = _phone_columns(columns_text, problems)
    return MatchingConfig(region=region, phone_columns=phone_columns, owner_phone_column=owner_column)


def _phone_columns(text: str, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """ROUTING_PHONE_COLUMNS: JSON like {"contact": ["telephone1", "mobilephone"], "account": [...]}."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not value or set(value) - set(DEFAULT_PHONE_COLUMNS):
        problems.append(
            'ROUTING_PHONE_COLUMNS must be JSON like {"contact": ["telephone1", "mobilephone"], '
            '"account": ["telephone1"], "lead": ["mobilephone"]} (tables: contact, account, lead)'
        )
        return dict(DEFAULT_PHONE_COLUMNS)
    result: dict[str, tuple[str, ...]] = {}
    for table, columns in value.items():
        if not isinstance(columns, list) or not all(isinstance(c, str) and _COLUMN.match(c) for c in columns):
            problems.append(f"ROUTING_PHONE_COLUMNS[{table!r}] must be a list of logical column names")
            continue
        result[table] = tuple(columns)
    return result


def _is_region(region: str) -> bool:
    import phonenumbers  # imported here: keeps `import function_app` fast

    return region in phonenumbers.SUPPORTED_REGIONS
