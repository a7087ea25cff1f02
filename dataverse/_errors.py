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

    # Failures describe themselves: a command prints ``cause`` and ``fix`` (core/cli.py), exit 1.
    exit_code = 1

    @property
    def cause(self) -> str:
        return f"Dataverse refused a request: {first_line(self)}"

    @property
    def fix(self) -> str:
        return "run python -m ops doctor"


class AuthenticationFailed(DataverseError):
    """401: the token was refused even after a fresh one was fetched. Check the app registration."""

    @property
    def cause(self) -> str:
        return f"Dataverse refused the app's token: {first_line(self)}"

    @property
    def fix(self) -> str:
        return (
            "add an enabled application user for AZURE_CLIENT_ID in the Power Platform admin center "
            "(docs/deployment.md step 2); check DATAVERSE_URL names the right environment"
        )


class Forbidden(DataverseError):
    """403: the application user lacks a privilege; extend its security role."""

    @property
    def cause(self) -> str:
        return f"Dataverse refused a privilege: {first_line(self)}"

    @property
    def fix(self) -> str:
        return "give the application user's security role the privilege (python -m ops doctor lists what is missing)"


class NotFound(DataverseError):
    """404: no such record (or entity set)."""

    @property
    def cause(self) -> str:
        return f"Dataverse has no such table, column or record: {first_line(self)}"

    @property
    def fix(self) -> str:
        return "run python -m ops provision (then python -m ops doctor)"


class PreconditionFailed(DataverseError):
    """412: an If-Match / If-None-Match condition failed."""


class DuplicateKey(PreconditionFailed):
    """412 with 0x80060892: a record with the same alternate key already exists."""


class Throttled(DataverseError):
    """429 kept coming after the retry policy ran out (service protection limits)."""

    @property
    def cause(self) -> str:
        return f"Dataverse is throttling the app (service protection limits): {first_line(self)}"

    @property
    def fix(self) -> str:
        return "run again in a few minutes; lower CALL_SYNC_BATCH_SIZE if it keeps happening"


class ServiceUnavailable(DataverseError):
    """5xx or no connection after the retry policy ran out."""

    @property
    def cause(self) -> str:
        return f"Dataverse did not answer: {first_line(self)}"

    @property
    def fix(self) -> str:
        return (
            "check DATAVERSE_URL and the network (and the service health in the Power Platform admin center), "
            "then run again"
        )


def first_line(error: BaseException, limit: int = 300) -> str:
    """The error's first line, without the placeholder status of a failure that got no answer."""
    text = str(error).replace("HTTP 0 ", "").strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
