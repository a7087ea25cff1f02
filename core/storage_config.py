"""Where the app's Table Storage is and how it signs in: ``AzureWebJobsStorage``, read the way the
Functions host reads it.

* A connection string in ``AzureWebJobsStorage`` (Azurite, ``UseDevelopmentStorage=true``, local runs,
  or an account that still allows shared keys) wins when it is set, as the host's exact match does.
* Otherwise identity-based storage: ``AzureWebJobsStorage__accountName`` (the table endpoint is
  ``https://<name>.table.core.windows.net``) or ``AzureWebJobsStorage__tableServiceUri``, with the
  managed identity (``AzureWebJobsStorage__credential`` = ``managedidentity``, optional;
  ``AzureWebJobsStorage__clientId`` picks a user-assigned identity). No account key anywhere.

The app reads only tables; the host also needs ``__blobServiceUri``/``__queueServiceUri`` when it is
given URIs instead of an account name (``__accountName`` covers all three). The identity needs
"Storage Table Data Contributor" for the app's state (infra/deploy.sh grants it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .ids import is_guid

__all__ = ["STORAGE_SETTING_NAMES", "StorageConfig", "parse_storage", "table_service"]

PREFIX = "AzureWebJobsStorage"
STORAGE_SETTING_NAMES = (
    PREFIX,
    f"{PREFIX}__accountName",
    f"{PREFIX}__tableServiceUri",
    f"{PREFIX}__credential",
    f"{PREFIX}__clientId",
)
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class StorageConfig:
    """Either ``connection_string`` or ``table_service_uri`` (identity-based) is set."""

    connection_string: str | None = None
    table_service_uri: str | None = None
    client_id: str | None = None  # a user-assigned managed identity; None: the system-assigned one

    @property
    def identity_based(self) -> bool:
        return self.connection_string is None

    def describe(self) -> str:
        """The mode, for the doctor and logs: never the account key."""
        if not self.identity_based:
            assert self.connection_string is not None
            return f"connection string ({_account_of(self.connection_string)})"
        who = f"user-assigned managed identity {self.client_id}" if self.client_id else "managed identity"
        return f"identity-based ({self.table_service_uri}, {who}, no account key)"

    def __repr__(self) -> str:  # the connection string may hold the account key
        return f"StorageConfig({self.describe()})"


def _account_of(connection_string: str) -> str:
    if connection_string.strip().lower().startswith("usedevelopmentstorage=true"):
        return "Azurite, UseDevelopmentStorage=true"
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    name = parts.get("AccountName") or urlsplit(parts.get("TableEndpoint", "")).hostname or "unnamed account"
    has_key = bool(parts.get("AccountKey") or parts.get("SharedAccessSignature"))
    return f"account {name}, {'with a key' if has_key else 'no key'}"


def parse_storage(get: Callable[[str], str | None], problems: list[str]) -> StorageConfig:
    """Read the storage settings; append a problem per missing or malformed one."""
    connection = get(PREFIX)
    if connection:
        return StorageConfig(connection_string=connection)
    account, uri = get(f"{PREFIX}__accountName"), get(f"{PREFIX}__tableServiceUri")
    credential, client_id = get(f"{PREFIX}__credential"), get(f"{PREFIX}__clientId")
    if not account and not uri:
        problems.append(
            f"{PREFIX} is not set: set the storage account connection string (UseDevelopmentStorage=true for "
            f"Azurite), or {PREFIX}__accountName for identity-based storage with the managed identity"
        )
        return StorageConfig(connection_string="")
    if uri:
        parts = urlsplit(uri)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            problems.append(
                f"{PREFIX}__tableServiceUri must be an absolute URL such as "
                f"https://contosoenreach.table.core.windows.net (got {uri!r})"
            )
        elif parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
            problems.append(f"{PREFIX}__tableServiceUri must use https:// (a token is never sent in the clear)")
        uri = uri.rstrip("/")
    else:
        assert account is not None
        if not _ACCOUNT.match(account):
            problems.append(
                f"{PREFIX}__accountName must be the storage account's name, 3 to 24 lower-case letters and "
                f"digits (got {account!r}); for another endpoint set {PREFIX}__tableServiceUri"
            )
        uri = f"https://{account}.table.core.windows.net"
    if credential and credential.lower() != "managedidentity":
        problems.append(f"{PREFIX}__credential must be managedidentity when set (got {credential!r})")
    if client_id and not is_guid(client_id):
        problems.append(f"{PREFIX}__clientId must be the client id (a GUID) of a user-assigned managed identity")
    return StorageConfig(table_service_uri=uri, client_id=client_id)


def table_service(config: StorageConfig | str, *, credential: Any = None, **options: Any) -> Any:
    """The ``TableServiceClient`` for ``config`` (a plain string is a connection string).

    Identity-based storage signs in with ``credential`` when given (the ops commands pass the
    administrator's sign-in), else with the managed identity the settings name."""
    from azure.data.tables import TableServiceClient

    if isinstance(config, str):
        config = StorageConfig(connection_string=config)
    if not config.identity_based:
        assert config.connection_string is not None
        return TableServiceClient.from_connection_string(config.connection_string, **options)
    if credential is None:
        from azure.identity import ManagedIdentityCredential

        credential = (
            ManagedIdentityCredential(client_id=config.client_id) if config.client_id else ManagedIdentityCredential()
        )
    assert config.table_service_uri is not None
    return TableServiceClient(endpoint=config.table_service_uri, credential=credential, **options)
