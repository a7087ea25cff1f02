"""The Dataverse token of a new process, fetched while the routing code imports and builds (the
composition root owns it: the shared Dataverse client of bridge/runtime.py takes its credential).

A cold first routing call used to pay, one after the other: the imports (matching, rules,
phonenumbers, the clients), the settings, the router, then the token (Entra ID: one discovery and
one token round trip, and the service's own time) and the lookup. ``start`` runs the credential's
first ``get_token`` on a thread from the raw environment (the same values the settings read,
before they are loaded), so the network wait overlaps the imports; ``credential_for`` hands the
router's client a credential that answers its first ``get_token`` with the prefetched token (or
waits for the fetch still in flight instead of starting a second one).

Only the standard library is imported here: the blueprint calls ``start`` before anything else.
Any failure of the prefetch is the normal path's to meet: the credential then asks again itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataverse.config import DataverseConfig

__all__ = ["credential_for", "start"]

_NAMES = (
    "DATAVERSE_URL",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_AUTHORITY_HOST",
)
_lock = threading.Lock()
_prefetch: tuple[dict[str, str | None], Future[tuple[Any, Any]]] | None = None
_asking = threading.Event()  # set once the credential is built and the token request goes out


def _values(environ: Mapping[str, str]) -> dict[str, str | None]:
    values = {name: (environ.get(name) or "").strip() or None for name in _NAMES}
    for url in ("DATAVERSE_URL", "AZURE_AUTHORITY_HOST"):
        if values[url]:
            values[url] = str(values[url]).rstrip("/")
    return values


def start(environ: Mapping[str, str] | None = None) -> None:
    """Start fetching the token, once per process (later calls do nothing)."""
    global _prefetch
    with _lock:
        if _prefetch is not None:
            return
        values = _values(os.environ if environ is None else environ)
        future: Future[tuple[Any, Any]] = Future()
        _prefetch = (values, future)
    if not values["DATAVERSE_URL"]:
        future.set_exception(LookupError("DATAVERSE_URL is not set"))
        _asking.set()
        return
    threading.Thread(target=_fetch, args=(values, future), name="dataverse-token-prefetch", daemon=True).start()


def wait_until_asking(timeout: float = 1.0) -> None:
    """Let the prefetch build its credential (CPU: azure-identity, MSAL, cryptography) before the
    caller's own imports compete with it for the interpreter: its network wait then overlaps them."""
    _asking.wait(timeout)


def _fetch(values: dict[str, str | None], future: Future[tuple[Any, Any]]) -> None:
    try:
        from dataverse import credential_from_config
        from dataverse.config import DataverseConfig

        config = DataverseConfig(
            url=str(values["DATAVERSE_URL"]),
            tenant_id=values["AZURE_TENANT_ID"],
            client_id=values["AZURE_CLIENT_ID"],
            client_secret=values["AZURE_CLIENT_SECRET"],
            certificate_path=values["AZURE_CLIENT_CERTIFICATE_PATH"],
            authority_host=values["AZURE_AUTHORITY_HOST"],
        )
        credential = credential_from_config(config)
        _asking.set()
        token = credential.get_token(config.scope)
    except BaseException as error:  # the normal path meets it again and reports it
        _asking.set()
        future.set_exception(error)
        return
    future.set_result((credential, token))


class _PrefetchedCredential:
    """The prefetch's credential: its first ``get_token`` for the Dataverse scope returns the
    prefetched token (waiting for it while in flight); everything else goes to the credential."""

    def __init__(self, future: Future[tuple[Any, Any]], scope: str, fallback: Any, wait_seconds: float) -> None:
        self._future = future
        self._scope = scope
        self._fallback = fallback  # builds the settings' credential when the prefetch failed
        self._wait_seconds = wait_seconds
        self._credential: Any = None
        self._token_taken = False
        self._lock = threading.Lock()

    def _resolve(self) -> tuple[Any, Any]:
        with self._lock:
            if self._credential is None:
                try:
                    self._credential, token = self._future.result(timeout=self._wait_seconds)
                except Exception:
                    self._credential, token = self._fallback(), None
                    self._token_taken = True
                else:
                    if token is None or token.expires_on - time.time() < 300:
                        self._token_taken = True
                return self._credential, token
            return self._credential, None

    def get_token(self, *scopes: str, claims: str | None = None, **options: Any) -> Any:
        credential, token = self._resolve()
        with self._lock:
            fresh = not self._token_taken and token is not None and not claims and scopes == (self._scope,)
            if fresh:
                self._token_taken = True
        if fresh:
            return token
        return credential.get_token(*scopes, claims=claims, **options)


def credential_for(config: DataverseConfig, fallback: Any) -> Any:
    """A credential for the shared Dataverse client: the prefetch's when one was started with the
    same values as ``config`` (it never starts a second token request beside it), else ``fallback()``."""
    with _lock:
        prefetch = _prefetch
    if prefetch is None:
        return fallback()
    values, future = prefetch
    wanted = {
        "DATAVERSE_URL": config.url,
        "AZURE_TENANT_ID": config.tenant_id,
        "AZURE_CLIENT_ID": config.client_id,
        "AZURE_CLIENT_SECRET": config.client_secret,
        "AZURE_CLIENT_CERTIFICATE_PATH": config.certificate_path,
        "AZURE_AUTHORITY_HOST": config.authority_host,
    }
    if values != wanted:
        return fallback()
    return _PrefetchedCredential(future, config.scope, fallback, wait_seconds=config.timeout + 5)


def _reset() -> None:
    """Forget the prefetch (tests that start a new "process")."""
    global _prefetch
    with _lock:
        _prefetch = None
        _asking.clear()
