"""The app's settings: the sections of the jobs this deployment runs, read once and checked at once.

Each section is parsed by its own package (``dataverse/config.py``, ``enreach/config.py``,
``matching/config.py``, ``routing/config.py``, ``call_sync/config.py``,
``presence_sync/config.py``); this module only decides which sections the enabled jobs
(``BRIDGE_JOBS``) need, and reports every problem of every needed section at once
(``SettingsError``). A section a disabled job alone needs is neither required nor read: a
routing-only deployment sets the Dataverse connection, the routing key, the default region and
storage, and nothing about Enreach or presence.

Storage (``AzureWebJobsStorage``) belongs to the Functions host and every job's durable state; it
is read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from core.config import Getter, SettingsError, environment_getter, seconds, unique

from .jobs import ALL_JOBS, JobsError, enabled_jobs

if TYPE_CHECKING:
    from call_sync.config import CallSyncConfig, UserIdSyncConfig
    from callbacks.config import CallbacksConfig
    from dataverse.config import DataverseConfig
    from enreach.config import EnreachConfig
    from matching.config import MatchingConfig
    from presence_sync.config import PresenceConfig
    from routing.config import RoutingConfig

__all__ = [
    "SETTING_NAMES",
    "JobDisabled",
    "Settings",
    "SettingsError",
    "command_settings",
    "get_settings",
    "load_settings",
]

_CORE_NAMES = ("BRIDGE_JOBS", "AzureWebJobsStorage", "BRIDGE_CONFIG_REFRESH_SECONDS")


def _names() -> tuple[str, ...]:
    from call_sync.config import NAMES as CALL_SYNC
    from call_sync.config import USER_ID_NAMES
    from callbacks.config import NAMES as CALLBACKS
    from dataverse.config import NAMES as DATAVERSE
    from enreach.config import NAMES as ENREACH
    from matching.config import NAMES as MATCHING
    from presence_sync.config import NAMES as PRESENCE
    from routing.config import NAMES as ROUTING

    names = _CORE_NAMES + DATAVERSE + ENREACH + MATCHING + ROUTING + CALL_SYNC + USER_ID_NAMES + PRESENCE + CALLBACKS
    return tuple(dict.fromkeys(names))


class JobDisabled(SettingsError):
    """A section of a job that ``BRIDGE_JOBS`` leaves out was asked for."""


# Which sections each job needs (besides Dataverse and storage, which every job needs).
_NEEDS: dict[str, frozenset[str]] = {
    "routing": frozenset({"matching", "routing"}),
    "call_sync": frozenset({"matching", "enreach", "call_sync"}),
    "user_ids": frozenset({"enreach", "user_ids"}),
    "presence": frozenset({"enreach", "presence"}),
    "callbacks": frozenset({"matching", "enreach", "callbacks"}),
}


@dataclass(frozen=True)
class Settings:
    """The effective settings: one section per concern; a disabled job's section is absent and
    asking for it raises ``JobDisabled`` naming ``BRIDGE_JOBS``."""

    jobs: frozenset[str]
    dataverse: DataverseConfig
    storage_connection_string: str = field(repr=False)
    sections: Mapping[str, object] = field(default_factory=dict, repr=False)
    config_refresh_seconds: float = 60.0  # configuration rows re-read at most this often (core/rows.py)

    def has(self, section: str) -> bool:
        return section in self.sections

    def _section(self, name: str) -> object:
        try:
            return self.sections[name]
        except KeyError:
            raise JobDisabled(
                [f"the {name} settings are not loaded: no job in BRIDGE_JOBS={','.join(sorted(self.jobs))} uses them"]
            ) from None

    @property
    def enreach(self) -> EnreachConfig:
        return self._section("enreach")  # type: ignore[return-value]

    @property
    def matching(self) -> MatchingConfig:
        return self._section("matching")  # type: ignore[return-value]

    @property
    def routing(self) -> RoutingConfig:
        return self._section("routing")  # type: ignore[return-value]

    @property
    def call_sync(self) -> CallSyncConfig:
        return self._section("call_sync")  # type: ignore[return-value]

    @property
    def user_ids(self) -> UserIdSyncConfig:
        return self._section("user_ids")  # type: ignore[return-value]

    @property
    def presence(self) -> PresenceConfig:
        return self._section("presence")  # type: ignore[return-value]

    @property
    def callbacks(self) -> CallbacksConfig:
        return self._section("callbacks")  # type: ignore[return-value]

    @property
    def presence_polling_enabled(self) -> bool:
        """Whether ``sync_presence`` polls Enreach (PRESENCE_POLLING; auto: while no availability
        notification type is mapped)."""
        return self.presence.polling_enabled(bool(self.enreach.mapping.events.availability_changed))

    def __repr__(self) -> str:  # never print secrets
        return f"Settings(jobs={sorted(self.jobs)}, {self.dataverse!r})"


def _parsers() -> dict[str, object]:
    from call_sync.config import parse_config, parse_user_ids
    from callbacks.config import parse_callbacks
    from enreach.config import parse_enreach
    from matching.config import parse_matching
    from presence_sync.config import parse_presence
    from routing.config import parse_routing

    return {
        "matching": parse_matching,
        "enreach": parse_enreach,
        "routing": parse_routing,
        "call_sync": parse_config,
        "user_ids": parse_user_ids,
        "presence": parse_presence,
        "callbacks": parse_callbacks,
    }


def load_settings(environ: Mapping[str, str] | None = None, *, get: Getter | None = None) -> Settings:
    """Read and validate the settings the enabled jobs need; raise ``SettingsError`` listing all problems."""
    from dataverse.config import parse_dataverse

    get = get or environment_getter(environ)
    problems: list[str] = []
    env: dict[str, str] = {"BRIDGE_JOBS": get("BRIDGE_JOBS") or ""}
    try:
        jobs = enabled_jobs(env)
    except JobsError as error:
        problems.append(str(error))
        jobs = frozenset(ALL_JOBS)
    dataverse = parse_dataverse(get, problems)
    storage = get("AzureWebJobsStorage") or ""
    if not storage:
        problems.append(
            "AzureWebJobsStorage is not set: set the storage account connection string "
            "(UseDevelopmentStorage=true for Azurite)"
        )
    refresh = seconds(get, problems, "BRIDGE_CONFIG_REFRESH_SECONDS", 60.0, 0, 3600)
    needed: set[str] = set()
    for job in jobs:
        needed |= _NEEDS.get(job, frozenset())
    sections: dict[str, object] = {}
    for name, parse in _parsers().items():
        if name in needed:
            sections[name] = parse(get, problems)  # type: ignore[operator]
    if problems:
        raise SettingsError(unique(problems))
    return Settings(
        jobs=jobs,
        dataverse=dataverse,
        storage_connection_string=storage,
        sections=sections,
        config_refresh_seconds=refresh,
    )


SETTING_NAMES = _names()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (the host's environment does not change)."""
    return load_settings()


def command_settings(path: str | None) -> Settings:
    """The settings for a command run by ``core.cli.run_command``: ``--settings FILE`` (a
    local.settings.json) is applied first; a ``SettingsError`` names every problem (exit 2)."""
    from core.cli import apply_settings_file

    if path:
        apply_settings_file(path)
    return load_settings()
