"""Tokens for Dataverse: an azure-identity credential chosen from settings, cached here."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from core.settings import Settings

__all__ = ["TokenProvider", "credential_from_settings", "credential_from_values"]

# Refresh this long before expiry, so a token never dies in flight.
_REFRESH_MARGIN_SECONDS = 300


def credential_from_settings(settings: Settings) -> TokenCredential:
    """Client secret, certificate, or (with neither) managed identity, as the settings say."""
    return credential_from_values(
        tenant_id=settings.azure_tenant_id,
        client_id=settings.azure_client_id,
        client_secret=settings.azure_client_secret,
        certificate_path=settings.azure_client_certificate_path,
        authority_host=settings.azure_authority_host,
    )


def credential_from_values(
    *,
    tenant_id: str | None,
    client_id: str | None,
    client_secret: str | None,
    certificate_path: str | None,
    authority_host: str | None,
) -> TokenCredential:
    """The credential for these values (what ``credential_from_settings`` reads from the settings;
    the routing token prefetch passes them before the settings are loaded)."""
    from azure.identity import CertificateCredential, ClientSecretCredential, ManagedIdentityCredential

    options: dict[str, Any] = {}
    if authority_host:
        # A non-Microsoft authority (the sandbox's emulator) has no instance discovery.
        options = {"authority": authority_host, "disable_instance_discovery": True}
    if client_secret:
        assert tenant_id and client_id
        return ClientSecretCredential(tenant_id, client_id, client_secret, **options)
    if certificate_path:
        assert tenant_id and client_id
        return CertificateCredential(tenant_id, client_id, certificate_path=certificate_path, **options)
    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return ManagedIdentityCredential()


class TokenProvider:
    """Hands out a bearer token for one scope, asking the credential only when needed.

    ``refresh()`` fetches a new token even though the cached one has not expired
    (after the service answered 401): it sends a claims challenge, which makes
    MSAL bypass its own cache.
    """

    def __init__(self, credential: TokenCredential, scope: str) -> None:
        self._credential = credential
        self._scope = scope
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() > self._expires_on - _REFRESH_MARGIN_SECONDS:
                self._store(self._credential.get_token(self._scope))
            assert self._token is not None
            return self._token

    def refresh(self, stale: str, claims: str | None = None) -> str:
        """Replace ``stale`` with a freshly issued token (once, however many threads saw it fail)."""
        with self._lock:
            if self._token is not None and self._token != stale:
                return self._token  # another thread already refreshed it
            challenge = claims or json.dumps(
                {"access_token": {"nbf": {"essential": True, "value": str(int(time.time()))}}}
            )
            self._store(self._credential.get_token(self._scope, claims=challenge))
            assert self._token is not None
            return self._token

    def _store(self, access_token: Any) -> None:
        self._token = access_token.token
        self._expires_on = float(access_token.expires_on)
