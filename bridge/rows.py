"""The configuration rows and the run status of this instance (issue 19), built from the shared
Dataverse client: the one ``RowSource`` every job reads (``config_rows``), the settings a timer run
uses (``effective_settings``: the app settings with the setting rows read at its start), and the
timers' run status sink (``run_status``).

Which business options a setting row may hold is each package's to say (``ROW_OPTIONS`` in its
``config.py``); this module puts them together, as ``bridge.settings`` does with the sections.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING

from core.rows import ConfigRow, ErrorWriter, Reader, RowSource, RowsSnapshot, read_paths
from core.runstatus import RunStatusWriter
from core.schema import BRIDGE_SETTING, ERROR_COLUMN, ROUTING_RULE
from core.setting_rows import SettingRows

from .runtime import dataverse_client
from .settings import Settings, get_settings, load_settings

if TYPE_CHECKING:
    from dataverse import DataverseClient

__all__ = [
    "ConfigRows",
    "config_rows",
    "current_settings",
    "effective_settings",
    "read_config_rows",
    "row_options",
    "run_status",
    "setting_rows",
    "write_row_error",
]


def row_options() -> tuple[str, ...]:
    """Every business option a setting row may hold, as each package declares them."""
    from call_sync.config import ROW_OPTIONS as CALL_SYNC
    from presence_sync.config import ROW_OPTIONS as PRESENCE

    return CALL_SYNC + PRESENCE


def owner_column(settings: Settings) -> str | None:
    """The user column holding a direct number (a rule row's target user), when routing is enabled."""
    return settings.matching.owner_phone_column if settings.has("matching") else None


def read_config_rows(
    client: DataverseClient, owner_column: str | None
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Both tables in one request; a table not provisioned yet reads as empty (app settings only)."""
    from dataverse import BatchRequest

    paths = read_paths([owner_column] if owner_column else [])
    answers = client.batch([BatchRequest("GET", path) for path in paths], continue_on_error=True, idempotent=True)
    tables: list[list[dict[str, object]]] = []
    for answer in answers:
        if answer.status == 404:
            tables.append([])
            continue
        answer.raise_for_status()
        tables.append(list(answer.body.get("value", [])))
    if len(tables) != 2:
        raise RuntimeError("the configuration $batch was not answered in full")
    return tables[0], tables[1]


def write_row_error(client: DataverseClient, row: ConfigRow, text: str | None) -> None:
    """Set (or clear) a configuration row's ``enr_error``."""
    table = ROUTING_RULE if row.table == ROUTING_RULE.logical_name else BRIDGE_SETTING
    client.update(table.entity_set, uuid.UUID(row.row_id), {ERROR_COLUMN: text})


class ConfigRows(RowSource):
    """The row source, and the effective settings of its latest snapshot (computed in the refresh,
    before any other listener runs: the routing rules' and the presence sync's)."""

    def __init__(self, read: Reader, *, interval: float, write_error: ErrorWriter) -> None:
        super().__init__(read, interval=interval, write_error=write_error)
        self.effective: Settings | None = None
        self.subscribe(self._apply_settings)

    def _apply_settings(self, snapshot: RowsSnapshot) -> None:
        if not snapshot.settings:  # no setting rows: the app settings as read at start
            self.effective = None
            return
        settings, _, problems = setting_rows().apply(os.environ, snapshot.settings)
        self.settle_errors(snapshot.settings, problems)
        self.effective = settings


@lru_cache(maxsize=1)
def config_rows() -> ConfigRows:
    """This instance's configuration rows (settings and routing rules), one ``$batch`` per refresh,
    at most every ``BRIDGE_CONFIG_REFRESH_SECONDS``."""
    settings, client = get_settings(), dataverse_client()
    column = owner_column(settings)
    return ConfigRows(
        lambda: read_config_rows(client, column),
        interval=settings.config_refresh_seconds,
        write_error=lambda row, text: write_row_error(client, row, text),
    )


@lru_cache(maxsize=1)
def setting_rows() -> SettingRows[Settings]:
    return SettingRows(load=load_settings, options=row_options())


def current_settings() -> Settings:
    """The app settings with the setting rows of the last read (never waits for a read)."""
    return config_rows().effective or get_settings()


def effective_settings() -> Settings:
    """The settings a timer run uses: the app settings with the setting rows read at its start
    (when the last read is older than the refresh interval); a bad row's ``enr_error`` written once."""
    config_rows().refresh_if_due()
    return current_settings()


@lru_cache(maxsize=1)
def run_status() -> RunStatusWriter:
    """The timers' run status sink: one upsert of the job's ``enr_bridgerun`` row per run."""
    client = dataverse_client()
    return RunStatusWriter(lambda entity_set, key, row: client.upsert(entity_set, key, row))
