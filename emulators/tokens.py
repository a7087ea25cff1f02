"""An Entra-ID-style token service over TLS, so the real azure-identity/MSAL code runs locally.

Serves ``/<tenant>/v2.0/.well-known/openid-configuration`` and the client-credentials
``/<tenant>/oauth2/v2.0/token`` endpoint. MSAL refuses plain http, so the server
uses a throwaway CA made by ``trustme``; clients trust it through
``REQUESTS_CA_BUNDLE`` (see ``TestCA.bundle_path``).
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ._server import EmulatorServer, Request, Response, json_response

__all__ = ["TestCA", "TokenIssuer", "TokenServer"]


class TestCA:
    """A throwaway certificate authority and a ``localhost`` server certificate."""

    def __init__(self, directory: str | None = None) -> None:
        import trustme

        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("localhost", "127.0.0.1")
        directory = directory or tempfile.mkdtemp(prefix="emulator-ca-")
        self.bundle_path = os.path.join(directory, "emulator-ca.pem")
        self._ca.cert_pem.write_to_path(self.bundle_path)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        return context


@dataclass
class _Issued:
    client_id: str
    scope: str
    expires_at: float


class TokenIssuer:
    """Issues opaque bearer tokens to known clients and validates them for the Dataverse emulator."""

    def __init__(self, clients: dict[str, str] | None = None, *, lifetime_seconds: int = 3599) -> None:
        self.clients = dict(clients or {})  # client_id -> secret
        self.lifetime_seconds = lifetime_seconds
        self._tokens: dict[str, _Issued] = {}
        self._lock = threading.Lock()
        self.issued_count = 0

    def issue(self, client_id: str, scope: str) -> tuple[str, int]:
        token = "emu." + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Issued(client_id, scope, time.time() + self.lifetime_seconds)
            self.issued_count += 1
        return token, self.lifetime_seconds

    def client_of(self, token: str) -> str | None:
        """The client id a token was issued to (the Dataverse user its requests count against)."""
        with self._lock:
            issued = self._tokens.get(token)
        return issued.client_id if issued is not None else None

    def validate(self, token: str, audience: str) -> bool:
        with self._lock:
            issued = self._tokens.get(token)
        return (
            issued is not None
            and issued.expires_at > time.time()
            and issued.scope.rstrip("/").removesuffix("/.default").rstrip("/") == audience.rstrip("/")
        )

    def expire_all(self) -> None:
        """Make every issued token invalid at once (what a revoked or lapsed token looks like)."""
        with self._lock:
            for issued in self._tokens.values():
                issued.expires_at = 0.0


class TokenServer(EmulatorServer):
    """``token_latency_ms``: how long the token endpoint takes to issue a token (Entra ID is not
    instant: a cold start pays it on top of the network latency, which ``inject`` sets for every
    request). 0 by default; also set with ``POST /_emulator/token-latency {"ms": 150}``."""

    name = "token-emulator"

    def __init__(
        self, issuer: TokenIssuer, ca: TestCA, *, host: str = "127.0.0.1", port: int = 0, token_latency_ms: float = 0.0
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ca.server_context())
        self.issuer = issuer
        self.token_latency_ms = token_latency_ms

    def control(self, request: Request) -> Response | None:
        if request.path == "/_emulator/token-latency" and request.method == "POST":
            spec = request.json() or {}
            try:
                self.token_latency_ms = max(0.0, float(spec.get("ms", 0)))
            except (TypeError, ValueError):
                return json_response(400, {"error": {"code": "BadRequest", "message": "ms must be a number"}})
            return Response(204)
        return None

    def clear_faults(self) -> None:
        super().clear_faults()
        self.token_latency_ms = 0.0

    def handle(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if len(parts) >= 2 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            tenant = parts[0]
            base = f"{self.url}/{tenant}"
            return json_response(
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "jwks_uri": f"{base}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "token"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                    "tenant_region_scope": "EU",
                },
            )
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"] and request.method == "POST":
            form = dict(parse_qsl(request.body.decode("utf-8")))
            if form.get("grant_type") != "client_credentials":
                return _oauth_error("unsupported_grant_type", "only client_credentials is emulated")
            client_id = form.get("client_id", "")
            if client_id not in self.issuer.clients:
                return _oauth_error("unauthorized_client", f"AADSTS700016: Application '{client_id}' not found")
            if form.get("client_secret") != self.issuer.clients[client_id]:
                return _oauth_error("invalid_client", "AADSTS7000215: Invalid client secret provided.")
            scope = form.get("scope", "")
            if not scope.endswith("/.default"):
                return _oauth_error("invalid_scope", "AADSTS1002012: scope must end with /.default")
            if self.token_latency_ms:
                time.sleep(self.token_latency_ms / 1000.0)
            token, lifetime = self.issuer.issue(client_id, scope.split()[0])
            return json_response(
                200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
            )
        return json_response(404, {"error": "not_found", "error_description": f"no such endpoint {request.path}"})


def _oauth_error(code: str, description: str) -> Response:
    return json_response(401 if code == "invalid_client" else 400, {"error": code, "error_description": description})
