"""What every command-line entry point (``python -m routing|call_sync|ops``) shares: reading
the app settings from the environment or from a ``local.settings.json``, and failing cleanly.

Exit codes (the same for every command, documented in the README):

* ``0``: done;
* ``1``: a runtime failure: refused credentials, a service down, slow or throttling, a job
  that reported failures, a question that could not be answered;
* ``2``: a settings or usage problem: a missing or malformed setting, an unreadable
  ``--settings`` file, a bad argument.

An expected failure prints one or two lines (the cause, then ``fix: ...``) and no
traceback; ``--debug`` adds the traceback. ``run_command`` is the one wrapper doing this.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .config import SettingsError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "add_settings_argument",
    "apply_settings_file",
    "describe_failure",
    "run_command",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """An expected failure a command reports itself: ``cause`` and how to fix it."""

    def __init__(self, cause: str, fix: str = "", *, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(cause)
        self.cause, self.fix, self.exit_code = cause, fix, exit_code


@dataclass(frozen=True)
class Failure:
    cause: str
    fix: str
    exit_code: int

    def lines(self, prog: str) -> str:
        text = f"{prog}: {self.cause}"
        return text + (f"\n  fix: {self.fix}" if self.fix else "")


def add_settings_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings",
        metavar="FILE",
        help="read app settings from this local.settings.json first (what the environment sets wins)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")


def apply_settings_file(path: str) -> None:
    """Put a local.settings.json's ``Values`` into the environment, without overriding what is set
    (except ``REQUESTS_CA_BUNDLE``: a file that names a CA bundle needs it to reach its services)."""
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle).get("Values", {})
        if not isinstance(values, dict):
            raise ValueError("'Values' is not an object")
    except (OSError, ValueError, AttributeError) as error:
        raise SettingsError([f"--settings {path}: not a readable local.settings.json ({error})"]) from None
    for name, value in values.items():
        # REQUESTS_CA_BUNDLE is the file's own trust (the sandbox's settings file names its CA): it wins
        if isinstance(value, str) and value and (name not in os.environ or name == "REQUESTS_CA_BUNDLE"):
            os.environ[name] = value


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).replace("HTTP 0 ", "").strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _tls_untrusted(error: BaseException) -> bool:
    text = str(error)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text


def describe_failure(error: BaseException) -> Failure | None:
    """Cause, fix and exit code of an expected failure; None for a bug (show the traceback).

    Failures describe themselves: an error with ``cause``, ``fix`` and ``exit_code`` attributes
    (``CommandError``, ``SettingsError``, the Dataverse and Enreach clients' errors) is printed as
    it says; this module knows none of their types.
    """
    import requests

    if _tls_untrusted(error) and (isinstance(error, requests.RequestException) or hasattr(error, "fix")):
        return Failure(
            f"TLS certificate not trusted: {_first_line(error)}",
            "the server's certificate chain is not in the trusted CAs: check REQUESTS_CA_BUNDLE (an exported "
            "one overrides the settings file's; the sandbox's settings file names its own) or your TLS proxy",
            EXIT_FAILED,
        )
    cause, fix, code = (getattr(error, name, None) for name in ("cause", "fix", "exit_code"))
    if isinstance(cause, str) and isinstance(fix, str) and isinstance(code, int):
        return Failure(cause, fix, code)
    if isinstance(error, requests.RequestException):
        return Failure(
            f"network error: {type(error).__name__}: {_first_line(error)}",
            "check the service addresses in the settings and the network",
            EXIT_FAILED,
        )
    storage = _storage_failure(error)
    if storage is not None:
        return storage
    return None


def _storage_failure(error: BaseException) -> Failure | None:
    try:
        from azure.core.exceptions import AzureError, ClientAuthenticationError
    except ImportError:  # pragma: no cover - azure-core is a dependency
        return None
    if isinstance(error, ClientAuthenticationError):
        return Failure(
            f"Azure refused the credentials: {_first_line(error)}",
            "check AzureWebJobsStorage (account key) or AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET",
            EXIT_FAILED,
        )
    if isinstance(error, AzureError):
        return Failure(
            f"Table storage failed: {type(error).__name__}: {_first_line(error)}",
            "check AzureWebJobsStorage (the connection string) and that the storage account is reachable",
            EXIT_FAILED,
        )
    return None


def run_command(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int],
    argv: list[str] | None = None,
    *,
    log_level: int = logging.WARNING,
) -> int:
    """Parse ``argv`` (bad arguments exit 2 through argparse), run ``body`` and turn an expected
    failure into one or two lines on stderr and its exit code. ``body`` calls ``command_settings``."""
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(level=logging.DEBUG if debug else log_level, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        # The SDKs log every refused token request at WARNING with a traceback-like wall of text.
        # Retries are announced at WARNING; the final failure is what the operator needs.
        for noisy in ("azure", "msal", "urllib3", "core.retry"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        return body(args)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        failure = describe_failure(error)
        if debug:
            traceback.print_exc()
        if failure is None:
            failure = Failure(
                f"unexpected error: {type(error).__name__}: {_first_line(error)}",
                "run again with --debug for the traceback, and report it with the command you ran",
                EXIT_FAILED,
            )
        print(failure.lines(parser.prog), file=sys.stderr)
        return failure.exit_code
