"""The Enreach connection's settings section: the API user, addresses, the vendor-name mapping and
the notification endpoint's secret.

``ENREACH_USER``, ``ENREACH_SECRET_KEY``, ``ENREACH_API_URL``, ``ENREACH_DISCOVERY_URL``,
``ENREACH_FIELD_MAP``, ``ENREACH_WEBHOOK_SECRET``, ``ENREACH_WEBHOOK_SECRET_HEADER`` and
``HTTP_TIMEOUT_SECONDS`` (README, settings table). Needed by every job that talks to Enreach (the
call sync, the user id sync, the presence sync); a routing-only deployment leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Getter, http_header, seconds, url

from ._mapping import EnreachMapping, FieldMapError, parse_field_map

__all__ = ["NAMES", "EnreachConfig", "parse_enreach"]

NAMES = (
    "ENREACH_USER",
    "ENREACH_SECRET_KEY",
    "ENREACH_API_URL",
    "ENREACH_DISCOVERY_URL",
    "ENREACH_FIELD_MAP",
    "ENREACH_WEBHOOK_SECRET",
    "ENREACH_WEBHOOK_SECRET_HEADER",
)
DEFAULT_DISCOVERY_URL = "https://discover.enreachvoice.com"


@dataclass(frozen=True)
class EnreachConfig:
    user: str
    secret_key: str = field(repr=False)
    api_url: str | None = None
    discovery_url: str = DEFAULT_DISCOVERY_URL
    mapping: EnreachMapping = field(default_factory=EnreachMapping)
    timeout: float = 10.0
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_secret_header: str = "Secret"

    def __repr__(self) -> str:  # never print the user's e-mail or a secret
        return f"EnreachConfig(api_url={self.api_url!r}, discovery_url={self.discovery_url!r})"


def parse_enreach(get: Getter, problems: list[str]) -> EnreachConfig:
    """Read the section with ``get(name)``; append one line per problem."""
    user = get("ENREACH_USER") or ""
    if not user:
        problems.append("ENREACH_USER is not set: set it to the Enreach API user's e-mail address")
    elif "@" not in user:
        problems.append("ENREACH_USER must be an e-mail address (the Enreach API user)")
    secret = get("ENREACH_SECRET_KEY") or ""
    if not secret:
        problems.append("ENREACH_SECRET_KEY is not set: set it to the API user's Enreach secret key")
    api_url = get("ENREACH_API_URL")
    if api_url:
        api_url = url("ENREACH_API_URL", api_url, problems)
    discovery = url("ENREACH_DISCOVERY_URL", get("ENREACH_DISCOVERY_URL") or DEFAULT_DISCOVERY_URL, problems)
    mapping = EnreachMapping()
    try:
        mapping = parse_field_map(get("ENREACH_FIELD_MAP"))
    except FieldMapError as error:
        problems.append(str(error))
    webhook_secret = get("ENREACH_WEBHOOK_SECRET")
    if webhook_secret is not None and len(webhook_secret) < 16:
        problems.append(
            "ENREACH_WEBHOOK_SECRET is too short: use the 16+ character Secret that Enreach support "
            "configured for the /api/presence/enreach endpoint"
        )
    return EnreachConfig(
        user=user,
        secret_key=secret,
        api_url=api_url,
        discovery_url=discovery,
        mapping=mapping,
        timeout=seconds(get, problems, "HTTP_TIMEOUT_SECONDS", 10.0, 0, 230),
        webhook_secret=webhook_secret or None,
        webhook_secret_header=http_header(get, problems, "ENREACH_WEBHOOK_SECRET_HEADER", "Secret"),
    )
