"""Tokens for Dataverse: an azure-identity credential chosen from settings, cached here."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from .config import DataverseConfig

__all__ = ["TokenProvider", "credential_from_config"]

# Refresh this long before expiry, so a token never dies in flight.
_REFRESH_MARGIN_SECONDS = 300


def credential_from_config(config: DataverseConfig) -> TokenCredential:
    """Client secret, certificate, or (with neither) managed identity, as the section says."""
    from azure.identity import CertificateCredential, ClientSecretCredential, ManagedIdentityCredential

    options: dict[str, Any] = {}
    if config.authority_host:
        # A non-Microsoft authority (the sandbox's emulator) has no instance discovery.
        options = {"authority": config.authority_host, "disable_instance_discovery": True}
    if config.credential_kind == "client_secret":
        assert config.tenant_id and config.client_id and config.client_secret
        return ClientSecretCredential(config.tenant_id, config.client_id, config.client_secret, **options)
    if config.credential_kind == "certificate":
        assert config.tenant_id and config.client_id and config.certificate_path
        return CertificateCredential(
            config.tenant_id,
            config.client_id,
            certificate_path=config.certificate_path,
            **options,
        )
    if config.client_id:
        return ManagedIdentityCredential(client_id=config.client_id)
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
