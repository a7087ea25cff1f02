"""App settings, read once from the environment into a typed object.

Every setting the app reads is listed here (and in ``local.settings.sample.json``
and the README). ``load_settings`` validates all of them at once and raises
``SettingsError`` naming each missing or malformed setting and how to fix it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .ids import is_guid

if TYPE_CHECKING:
    from call_sync.config import CallSyncConfig
    from enreach import EnreachMapping
    from presence_sync.mapping import PresenceMapping
    from routing.rules import Rule

__all__ = ["SETTING_NAMES", "Settings", "SettingsError", "get_settings", "load_settings", "whole_number"]

# Every app setting the app reads (README and local.settings.sample.json list them too).
SETTING_NAMES = (
    "DATAVERSE_URL",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_AUTHORITY_HOST",
    "ENREACH_USER",
    "ENREACH_SECRET_KEY",
    "ENREACH_API_URL",
    "ENREACH_DISCOVERY_URL",
    "ENREACH_FIELD_MAP",
    "ENREACH_WEBHOOK_SECRET",
    "ENREACH_WEBHOOK_SECRET_HEADER",
    "ROUTING_API_KEY",
    "ROUTING_BASIC_USER",
    "ROUTING_BASIC_PASSWORD",
    "ROUTING_RULES",
    "ROUTING_TIME_BUDGET_SECONDS",
    "ROUTING_CACHE_TTL_SECONDS",
    "ROUTING_OWNER_PHONE_COLUMN",
    "ROUTING_PHONE_COLUMNS",
    "ROUTING_MAX_LOOKUPS",
    "PHONE_INDEX_SCHEDULE",
    "PHONE_CALL_SYNC_SCHEDULE",
    "USER_ID_SYNC_SCHEDULE",
    "CALL_DURATION_LIMIT",
    "DEFAULT_CRM_ASSIGNEE",
    "CALL_SYNC_OVERLAP_MINUTES",
    "CALL_SYNC_BATCH_SIZE",
    "CALL_SYNC_PARK_DAYS",
    "CALL_START_MARGIN_SECONDS",
    "CALL_SYNC_INITIAL_LOOKBACK_HOURS",
    "CALL_SYNC_PRIVATE_CALLS",
    "CALL_SYNC_RECORDING_LINK",
    "CALL_SYNC_FOLLOW_UPS",
    "CALL_SYNC_FOLLOW_UP_DUE_HOURS",
    "CALL_SYNC_QUEUE_CALLS",
    "CALL_SYNC_QUEUE_MAP",
    "CALL_SYNC_UNKNOWN_CALLER_LEADS",
    "CALL_SYNC_BLOCKED_NUMBERS",
    "CALL_SYNC_REGARDING_CASE",
    "CALL_SYNC_REGARDING_OPPORTUNITY",
    "CALL_SYNC_TRANSCRIPTS",
    "CALL_SYNC_TRANSCRIPT_WAIT_HOURS",
    "PRESENCE_WEBHOOK_KEY",
    "PRESENCE_MAPPING",
    "PRESENCE_IDS",
    "PRESENCE_ECHO_TTL_SECONDS",
    "PRESENCE_MAX_CALL_MINUTES",
    "PRESENCE_AFTER_CALL",
    "PRESENCE_RECONCILE_SCHEDULE",
    "PRESENCE_POLL_SCHEDULE",
    "PRESENCE_POLLING",
    "PHONE_DEFAULT_REGION",
    "AzureWebJobsStorage",
    "HTTP_TIMEOUT_SECONDS",
    "DATAVERSE_MAX_PARALLEL_BATCHES",
)

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
DEFAULT_PHONE_COLUMNS: dict[str, tuple[str, ...]] = {
    "contact": ("telephone1", "telephone2", "telephone3", "mobilephone"),
    "account": ("telephone1", "telephone2", "telephone3"),
    "lead": ("telephone1", "telephone2", "telephone3", "mobilephone"),
}


def whole_number(
    get: Callable[[str], str | None], problems: list[str], name: str, default: int, low: int, high: int
) -> int:
    """The setting ``name`` as a whole number from ``low`` to ``high`` (``default`` when unset); a bad
    value appends a problem naming the setting and answers the default. Job packages parsing their
    own settings section use it too."""
    text = get(name) or str(default)
    try:
        value = int(text)
        if not low <= value <= high:
            raise ValueError
    except ValueError:
        problems.append(f"{name} must be a whole number from {low} to {high} (got {text!r})")
        return default
    return value


class SettingsError(ValueError):
    """One or more app settings are missing or malformed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "App settings are incomplete; fix these in local.settings.json "
            "(locally) or the Function App's configuration (Azure):\n  - " + "\n  - ".join(problems)
        )


@dataclass(frozen=True)
class Settings:
    dataverse_url: str
    azure_tenant_id: str | None
    azure_client_id: str | None
    azure_client_secret: str | None
    azure_client_certificate_path: str | None
    azure_authority_host: str | None
    enreach_user: str
    enreach_secret_key: str
    enreach_api_url: str | None
    enreach_discovery_url: str
    enreach_mapping: EnreachMapping
    enreach_webhook_secret: str | None
    enreach_webhook_secret_header: str
    routing_api_key: str | None
    routing_basic_user: str | None
    routing_basic_password: str | None
    phone_default_region: str
    storage_connection_string: str
    http_timeout_seconds: float
    routing_rules: tuple[Rule, ...]
    routing_time_budget_seconds: float
    routing_cache_ttl_seconds: float
    routing_owner_phone_column: str
    routing_phone_columns: dict[str, tuple[str, ...]]
    phone_index_schedule: str
    phone_call_sync_schedule: str
    user_id_sync_schedule: str
    call_duration_limit_seconds: int
    default_crm_assignee: str | None
    call_sync_overlap_minutes: int
    call_sync_batch_size: int
    presence_webhook_key: str
    presence_mapping: PresenceMapping
    presence_echo_ttl_seconds: float
    call_sync: CallSyncConfig  # the call sync's own section (call_sync/config.py)
    routing_max_lookups: int = 64
    dataverse_max_parallel_batches: int = 4
    presence_max_call_minutes: int = 240
    presence_after_call: str = "AVAILABLE"  # base presence after a call with nothing saved
    presence_reconcile_schedule: str = "0 */5 * * * *"
    presence_poll_schedule: str = "0 */2 * * * *"
    presence_polling: str = "auto"  # auto: on while no availability notification type is mapped

    @property
    def presence_polling_enabled(self) -> bool:
        """``sync_presence`` polls Enreach when PRESENCE_POLLING is on, or auto and Enreach sends no
        availability notifications (none mapped in ``ENREACH_FIELD_MAP.events.availability_changed``)."""
        if self.presence_polling != "auto":
            return self.presence_polling == "on"
        return not self.enreach_mapping.events.availability_changed

    @property
    def dataverse_scope(self) -> str:
        return self.dataverse_url + "/.default"

    @property
    def credential_kind(self) -> str:
        """``client_secret``, ``certificate`` or ``managed_identity``."""
        if self.azure_client_secret:
            return "client_secret"
        if self.azure_client_certificate_path:
            return "certificate"
        return "managed_identity"

    def __repr__(self) -> str:  # never print secrets
        return f"Settings(dataverse_url={self.dataverse_url!r}, credential={self.credential_kind})"


def _url(name: str, value: str, problems: list[str]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        problems.append(f"{name} must be an absolute URL such as https://contoso.crm4.dynamics.com (got {value!r})")
    elif parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
        problems.append(f"{name} must use https:// (plain http is accepted only for localhost emulators)")
    return value.rstrip("/")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every app setting; raise ``SettingsError`` listing all problems."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    def required(name: str, hint: str) -> str:
        value = get(name)
        if value is None:
            problems.append(f"{name} is not set: {hint}")
            return ""
        return value

    dataverse_url = required("DATAVERSE_URL", "set it to your environment URL, e.g. https://contoso.crm4.dynamics.com")
    if dataverse_url:
        dataverse_url = _url("DATAVERSE_URL", dataverse_url, problems)
        if urlsplit(dataverse_url).path not in ("", "/"):
            problems.append("DATAVERSE_URL must be the environment root (no /api/data/... path)")

    tenant, client_id = get("AZURE_TENANT_ID"), get("AZURE_CLIENT_ID")
    secret, cert = get("AZURE_CLIENT_SECRET"), get("AZURE_CLIENT_CERTIFICATE_PATH")
    if secret and cert:
        problems.append("set only one of AZURE_CLIENT_SECRET and AZURE_CLIENT_CERTIFICATE_PATH")
    if secret or cert:
        for name, value in (("AZURE_TENANT_ID", tenant), ("AZURE_CLIENT_ID", client_id)):
            if not value:
                problems.append(f"{name} is not set: it is needed with a client secret or certificate")
    if cert and not os.path.isfile(cert):
        problems.append(f"AZURE_CLIENT_CERTIFICATE_PATH points to no file: {cert!r}")
    for name, value in (("AZURE_TENANT_ID", tenant), ("AZURE_CLIENT_ID", client_id)):
        if value and not is_guid(value) and not (name == "AZURE_TENANT_ID" and "." in value):
            problems.append(f"{name} must be a GUID (the Directory/Application id from the app registration)")
    authority = get("AZURE_AUTHORITY_HOST")
    if authority:
        authority = _url("AZURE_AUTHORITY_HOST", authority, problems)

    enreach_user = required("ENREACH_USER", "set it to the Enreach API user's e-mail address")
    if enreach_user and "@" not in enreach_user:
        problems.append("ENREACH_USER must be an e-mail address (the Enreach API user)")
    enreach_secret = required("ENREACH_SECRET_KEY", "set it to the API user's Enreach secret key")
    enreach_api = get("ENREACH_API_URL")
    if enreach_api:
        enreach_api = _url("ENREACH_API_URL", enreach_api, problems)
    discovery = _url(
        "ENREACH_DISCOVERY_URL", get("ENREACH_DISCOVERY_URL") or "https://discover.enreachvoice.com", problems
    )

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

    region = (get("PHONE_DEFAULT_REGION") or "").upper()
    if not region:
        problems.append("PHONE_DEFAULT_REGION is not set: set the ISO country of local numbers, e.g. FI")
    elif not _is_region(region):
        problems.append(f"PHONE_DEFAULT_REGION {region!r} is not a known ISO 3166 region code (e.g. FI, SE)")

    storage = required(
        "AzureWebJobsStorage", "set the storage account connection string (UseDevelopmentStorage=true for Azurite)"
    )

    def seconds(name: str, default: float, low: float, high: float) -> float:
        text = get(name) or str(default)
        try:
            value = float(text)
            if not low < value <= high:
                raise ValueError
        except ValueError:
            problems.append(f"{name} must be a number of seconds in ({low:g}, {high:g}] (got {text!r})")
            return default
        return value

    timeout = seconds("HTTP_TIMEOUT_SECONDS", 10.0, 0, 230)
    budget = seconds("ROUTING_TIME_BUDGET_SECONDS", 1.5, 0, 4.5)
    cache_ttl = seconds("ROUTING_CACHE_TTL_SECONDS", 60.0, -1, 86400)

    from routing.rules import RuleError, parse_rules

    try:
        rules = parse_rules(get("ROUTING_RULES"))
    except RuleError as error:
        problems.append(str(error))
        rules = ()
    owner_column = get("ROUTING_OWNER_PHONE_COLUMN") or "address1_telephone1"
    if not _COLUMN.match(owner_column):
        problems.append(f"ROUTING_OWNER_PHONE_COLUMN must be a logical column name (got {owner_column!r})")
    phone_columns = dict(DEFAULT_PHONE_COLUMNS)
    columns_text = get("ROUTING_PHONE_COLUMNS")
    if columns_text:
        phone_columns = _phone_columns(columns_text, problems)

    def schedule(name: str) -> str:
        value = get(name) or ""
        if not value:
            problems.append(f"{name} is not set: set an NCRONTAB schedule, e.g. 0 */5 * * * * (every 5 min)")
        elif len(value.split()) != 6:
            problems.append(f"{name} must have six NCRONTAB fields, e.g. 0 */5 * * * * (got {value!r})")
        return value

    def integer(name: str, default: int, low: int, high: int) -> int:
        return whole_number(get, problems, name, default, low, high)

    index_schedule = schedule("PHONE_INDEX_SCHEDULE")
    call_schedule = schedule("PHONE_CALL_SYNC_SCHEDULE")
    user_schedule = schedule("USER_ID_SYNC_SCHEDULE")
    duration_limit = integer("CALL_DURATION_LIMIT", 0, 0, 86400)
    overlap = integer("CALL_SYNC_OVERLAP_MINUTES", 15, 0, 1440)
    batch_size = integer("CALL_SYNC_BATCH_SIZE", 100, 1, 500)
    max_lookups = integer("ROUTING_MAX_LOOKUPS", 64, 1, 1000)
    assignee = get("DEFAULT_CRM_ASSIGNEE")
    if assignee and not is_guid(assignee):
        problems.append("DEFAULT_CRM_ASSIGNEE must be the systemuserid (a GUID) of the user who owns unmapped calls")

    presence_key = get("PRESENCE_WEBHOOK_KEY") or ""
    if not presence_key:
        problems.append(
            "PRESENCE_WEBHOOK_KEY is not set: set 16+ random characters; the Dataverse webhook "
            "for msdyn_agentstatus sends it in the X-Presence-Key header"
        )
    elif len(presence_key) < 16:
        problems.append("PRESENCE_WEBHOOK_KEY is too short: use at least 16 random characters")
    from enreach import FieldMapError, parse_field_map

    try:
        enreach_mapping = parse_field_map(get("ENREACH_FIELD_MAP"))
    except FieldMapError as error:
        problems.append(str(error))
    webhook_secret = get("ENREACH_WEBHOOK_SECRET")
    if webhook_secret is not None and len(webhook_secret) < 16:
        problems.append(
            "ENREACH_WEBHOOK_SECRET is too short: use the 16+ character Secret that Enreach support "
            "configured for the /api/presence/enreach endpoint"
        )
    secret_header = (get("ENREACH_WEBHOOK_SECRET_HEADER") or "Secret").strip()
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", secret_header):
        problems.append(f"ENREACH_WEBHOOK_SECRET_HEADER must be an HTTP header name (got {secret_header!r})")
    from presence_sync.mapping import MappingError, parse_mapping

    try:
        presence_mapping = parse_mapping(get("PRESENCE_MAPPING"), get("PRESENCE_IDS"))
    except MappingError as error:
        problems.append(str(error))
    echo_ttl = seconds("PRESENCE_ECHO_TTL_SECONDS", 30.0, 0, 600)
    from call_sync.config import parse_config

    call_sync = parse_config(get, problems)

    # 4 in flight use at most 4 s of Dataverse execution time per second: the documented 1,200 s per
    # 300 s window, so the syncs alone never exhaust the budget the routing webhook shares.
    max_parallel = integer("DATAVERSE_MAX_PARALLEL_BATCHES", 4, 1, 52)

    max_call_minutes = integer("PRESENCE_MAX_CALL_MINUTES", 240, 1, 1440)
    after_call = (get("PRESENCE_AFTER_CALL") or "AVAILABLE").upper()
    from presence_sync.mapping import BASE_STATUS

    if after_call not in BASE_STATUS:
        problems.append(
            f"PRESENCE_AFTER_CALL must be an Omnichannel base presence: {', '.join(BASE_STATUS)} (got {after_call!r})"
        )
    reconcile_schedule = schedule("PRESENCE_RECONCILE_SCHEDULE")
    poll_schedule = schedule("PRESENCE_POLL_SCHEDULE")
    polling = (get("PRESENCE_POLLING") or "auto").lower()
    if polling not in ("auto", "on", "off"):
        problems.append(
            f"PRESENCE_POLLING must be auto, on or off (got {polling!r}); auto polls while Enreach sends no "
            "availability notifications (ENREACH_FIELD_MAP.events.availability_changed unmapped)"
        )

    if problems:
        raise SettingsError(problems)
    return Settings(
        dataverse_url=dataverse_url,
        azure_tenant_id=tenant,
        azure_client_id=client_id,
        azure_client_secret=secret,
        azure_client_certificate_path=cert,
        azure_authority_host=authority,
        enreach_user=enreach_user,
        enreach_secret_key=enreach_secret,
        enreach_api_url=enreach_api,
        enreach_discovery_url=discovery,
        enreach_mapping=enreach_mapping,
        enreach_webhook_secret=webhook_secret or None,
        enreach_webhook_secret_header=secret_header,
        routing_api_key=api_key,
        routing_basic_user=basic_user,
        routing_basic_password=basic_password,
        phone_default_region=region,
        storage_connection_string=storage,
        http_timeout_seconds=timeout,
        routing_rules=rules,
        routing_time_budget_seconds=budget,
        routing_cache_ttl_seconds=cache_ttl,
        routing_owner_phone_column=owner_column,
        routing_phone_columns=phone_columns,
        phone_index_schedule=index_schedule,
        phone_call_sync_schedule=call_schedule,
        user_id_sync_schedule=user_schedule,
        call_duration_limit_seconds=duration_limit,
        default_crm_assignee=assignee.lower() if assignee else None,
        call_sync_overlap_minutes=overlap,
        call_sync_batch_size=batch_size,
        presence_webhook_key=presence_key,
        routing_max_lookups=max_lookups,
        presence_mapping=presence_mapping,
        presence_echo_ttl_seconds=echo_ttl,
        call_sync=call_sync,
        dataverse_max_parallel_batches=max_parallel,
        presence_max_call_minutes=max_call_minutes,
        presence_after_call=after_call,
        presence_reconcile_schedule=reconcile_schedule,
        presence_poll_schedule=poll_schedule,
        presence_polling=polling,
    )


def _phone_columns(text: str, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """ROUTING_PHONE_COLUMNS: JSON like {"contact": ["telephone1", "mobilephone"], "account": [...]}."""
    import json

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (the host's environment does not change)."""
    return load_settings()
