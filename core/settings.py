"""App settings, read once from the environment into a typed object.

Every setting the app reads is listed here (and in ``local.settings.sample.json``
and the README). ``load_settings`` validates all of them at once and raises
``SettingsError`` naming each missing or malformed setting and how to fix it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

__all__ = ["Settings", "SettingsError", "get_settings", "load_settings"]

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


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
    routing_api_key: str | None
    routing_basic_user: str | None
    routing_basic_password: str | None
    phone_default_region: str
    storage_connection_string: str
    http_timeout_seconds: float

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
        if value and not _GUID.match(value) and not (name == "AZURE_TENANT_ID" and "." in value):
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

    timeout_text = get("HTTP_TIMEOUT_SECONDS") or "10"
    try:
        timeout = float(timeout_text)
        if not 0 < timeout <= 230:
            raise ValueError
    except ValueError:
        problems.append(f"HTTP_TIMEOUT_SECONDS must be a number of seconds in (0, 230] (got {timeout_text!r})")
        timeout = 10.0

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
        routing_api_key=api_key,
        routing_basic_user=basic_user,
        routing_basic_password=basic_password,
        phone_default_region=region,
        storage_connection_string=storage,
        http_timeout_seconds=timeout,
    )


def _is_region(region: str) -> bool:
    import phonenumbers  # imported here: keeps `import function_app` fast

    return region in phonenumbers.SUPPORTED_REGIONS


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (the host's environment does not change)."""
    return load_settings()
