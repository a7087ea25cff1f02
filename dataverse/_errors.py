"""Typed errors carrying Dataverse's own ``error.code`` and message."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationFailed",
    "DataverseError",
    "DuplicateKey",
    "Forbidden",
    "NotFound",
    "PreconditionFailed",
    "ServiceUnavailable",
    "Throttled",
    "error_from_response",
]

DUPLICATE_KEY_CODE = "0x80060892"


class DataverseError(Exception):
    """A Dataverse Web API call failed. ``code`` is Dataverse's hex error code when it sent one."""

    def __init__(self, status: int, code: str | None, message: str, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.path = path
        self.retry_after: float | None = None  # seconds Dataverse asked to wait (429/503), when it said
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}HTTP {status} {code or ''} {message}".replace("  ", " ").strip())


class AuthenticationFailed(DataverseError):
    """401: the token was refused even after a fresh one was fetched. Check the app registration."""


class Forbidden(DataverseError):
    """403: the application user lacks a privilege; extend its security role."""


class NotFound(DataverseError):
    """404: no such record (or entity set)."""


class PreconditionFailed(DataverseError):
    """412: an If-Match / If-None-Match condition failed."""


class DuplicateKey(PreconditionFailed):
    """412 with 0x80060892: a record with the same alternate key already exists."""


class Throttled(DataverseError):
    """429 kept coming after the retry policy ran out (service protection limits)."""


class ServiceUnavailable(DataverseError):
    """5xx or no connection after the retry policy ran out."""


def error_from_response(status: int, body: Any, *, method: str = "", path: str = "") -> DataverseError:
    code: str | None = None
    message = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = str(body["error"].get("message", ""))
    elif isinstance(body, str):
        message = body[:500]
    cls: type[DataverseError]
    if status == 401:
        cls = AuthenticationFailed
    elif status == 403:
        cls = Forbidden
    elif status == 404:
        cls = NotFound
    elif status == 412:
        cls = DuplicateKey if code == DUPLICATE_KEY_CODE else PreconditionFailed
    elif status == 429:
        cls = Throttled
    elif status >= 500:
        cls = ServiceUnavailable
    else:
        cls = DataverseError
    return cls(status, code, message, method=method, path=path)
