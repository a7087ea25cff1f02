"""Caller authentication shared by the HTTP endpoints: constant-time comparisons only."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

__all__ = ["authenticate_enreach", "same_secret"]


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def authenticate_enreach(
    headers: Mapping[str, str],
    *,
    api_key: str | None,
    basic_user: str | None,
    basic_password: str | None,
    secret: str | None = None,
    secret_header: str = "Secret",  # noqa: S107 - a header name, not a secret
) -> bool:
    """Enreach's ``X-Benemen-APIKey`` header or HTTP Basic, as the settings allow; for webhook
    notifications also the endpoint's shared ``secret`` in the ``secret_header`` header."""
    lowered = {k.lower(): v for k, v in headers.items()}
    given_secret = lowered.get(secret_header.lower())
    if secret and given_secret is not None and same_secret(given_secret, secret):
        return True
    given_key = lowered.get("x-benemen-apikey")
    if api_key and given_key is not None and same_secret(given_key, api_key):
        return True
    authorization = lowered.get("authorization", "")
    if basic_user and basic_password and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return same_secret(user, basic_user) & same_secret(password, basic_password)
    return False
