"""Configuration sources and problems: the ground floor every package's settings section stands on.

This module knows *how* a value is read (by name, from the environment or a settings file, with
the source it came from) and how problems are collected and reported. It knows no setting of any
job: each package parses its own section (``routing/config.py``, ``call_sync/config.py``, ...)
with the readers here, and the composition root (``bridge/settings.py``) puts the sections
together for the jobs that are switched on (``BRIDGE_JOBS``).

A section parser has the signature ``parse(get, problems) -> Section``: ``get(name)`` answers the
stripped value or None when unset; every problem is one line naming the setting and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from .ids import is_guid

__all__ = [
    "Getter",
    "SettingsError",
    "environment_getter",
    "guid",
    "http_header",
    "schedule",
    "schedule_binding",
    "seconds",
    "unique",
    "url",
    "whole_number",
]

Getter = Callable[[str], "str | None"]

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class SettingsError(ValueError):
    """One or more app settings are missing or malformed; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "App settings are incomplete; fix these in local.settings.json "
            "(locally) or the Function App's configuration (Azure):\n  - " + "\n  - ".join(problems)
        )

    # Failures describe themselves (core/cli.py prints whatever it is given): exit 2, usage.
    @property
    def cause(self) -> str:
        return str(self)

    fix = ""
    exit_code = 2


def environment_getter(environ: Mapping[str, str] | None = None) -> Getter:
    """``get(name)``: the stripped value of ``name`` in ``environ`` (default ``os.environ``), None when
    unset or blank."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    return get


def whole_number(get: Getter, problems: list[str], name: str, default: int, low: int, high: int) -> int:
    """The setting ``name`` as a whole number from ``low`` to ``high`` (``default`` when unset); a bad
    value appends a problem naming the setting and answers the default."""
    text = get(name) or str(default)
    try:
        value = int(text)
        if not low <= value <= high:
            raise ValueError
    except ValueError:
        problems.append(f"{name} must be a whole number from {low} to {high} (got {text!r})")
        return default
    return value


def seconds(get: Getter, problems: list[str], name: str, default: float, low: float, high: float) -> float:
    """The setting ``name`` as seconds in ``(low, high]`` (``default`` when unset)."""
    text = get(name) or str(default)
    try:
        value = float(text)
        if not low < value <= high:
            raise ValueError
    except ValueError:
        problems.append(f"{name} must be a number of seconds in ({low:g}, {high:g}] (got {text!r})")
        return default
    return value


def url(name: str, value: str, problems: list[str]) -> str:
    """An absolute https URL (http only for localhost emulators), without a trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        problems.append(f"{name} must be an absolute URL such as https://contoso.crm4.dynamics.com (got {value!r})")
    elif parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
        problems.append(f"{name} must use https:// (plain http is accepted only for localhost emulators)")
    return value.rstrip("/")


def schedule(get: Getter, problems: list[str], name: str, default: str) -> str:
    """An NCRONTAB schedule with six fields (``default`` when unset)."""
    value = get(name) or default
    if len(value.split()) != 6:
        problems.append(f"{name} must have six NCRONTAB fields, e.g. 0 */5 * * * * (got {value!r})")
    return value


def guid(get: Getter, problems: list[str], name: str, what: str) -> str | None:
    """A GUID setting in lower case, or None when unset; ``what`` says which id it is."""
    value = get(name)
    if value and not is_guid(value):
        problems.append(f"{name} must be {what} (a GUID)")
        return None
    return value.lower() if value else None


def http_header(get: Getter, problems: list[str], name: str, default: str) -> str:
    value = (get(name) or default).strip()
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
        problems.append(f"{name} must be an HTTP header name (got {value!r})")
    return value


def unique(problems: Iterable[str]) -> list[str]:
    """Problems in order, each once (two sections may read the same shared setting)."""
    return list(dict.fromkeys(problems))


def schedule_binding(name: str, default: str) -> str:
    """A timer trigger's schedule: the binding expression ``%NAME%`` when the app setting is set (the
    host resolves it, as before), else the documented default, so an unset schedule is no error."""
    return f"%{name}%" if os.environ.get(name, "").strip() else default
