"""The Dataverse connection's settings section: environment URL, credential, timeout, parallelism.

``DATAVERSE_URL``, ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET``,
``AZURE_CLIENT_CERTIFICATE_PATH``, ``AZURE_AUTHORITY_HOST``, ``HTTP_TIMEOUT_SECONDS`` and
``DATAVERSE_MAX_PARALLEL_BATCHES`` (README, settings table). Every job needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.config import Getter, seconds, url, whole_number
from core.ids import is_guid

__all__ = ["NAMES", "DataverseConfig", "parse_dataverse"]

NAMES = (
    "DATAVERSE_URL",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_AUTHORITY_HOST",
    "HTTP_TIMEOUT_SECONDS",
    "DATAVERSE_MAX_PARALLEL_BATCHES",
)


@dataclass(frozen=True)
class DataverseConfig:
    url: str
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    certificate_path: str | None = None
    authority_host: str | None = None
    timeout: float = 10.0
    # 4 in flight use at most 4 s of Dataverse execution time per second: the documented 1,200 s per
    # 300 s window, so the syncs alone never exhaust the budget the routing webhook shares.
    max_parallel_batches: int = 4

    @property
    def scope(self) -> str:
        return self.url + "/.default"

    @property
    def credential_kind(self) -> str:
        """``client_secret``, ``certificate`` or ``managed_identity``."""
        if self.client_secret:
            return "client_secret"
        if self.certificate_path:
            return "certificate"
        return "managed_identity"

    def __repr__(self) -> str:  # never print secrets
        return f"DataverseConfig(url={self.url!r}, credential={self.credential_kind})"


def parse_dataverse(get: Getter, problems: list[str]) -> DataverseConfig:
    """Read the section with ``get(name)``; append one line per problem."""
    dataverse_url = get("DATAVERSE_URL") or ""
    if not dataverse_url:
        problems.append(
            "DATAVERSE_URL is not set: set it to your environment URL, e.g. https://contoso.crm4.dynamics.com"
        )
    else:
        dataverse_url = url("DATAVERSE_URL", dataverse_url, problems)
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
        authority = url("AZURE_AUTHORITY_HOST", authority, problems)
    return DataverseConfig(
        url=dataverse_url,
        tenant_id=tenant,
        client_id=client_id,
        client_secret=secret,
        certificate_path=cert,
        authority_host=authority,
        timeout=seconds(get, problems, "HTTP_TIMEOUT_SECONDS", 10.0, 0, 230),
        max_parallel_batches=whole_number(get, problems, "DATAVERSE_MAX_PARALLEL_BATCHES", 4, 1, 52),
    )
