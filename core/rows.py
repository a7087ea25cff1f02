"""Dataverse rows as a configuration source (issue 19): ``enr_bridgesetting`` and ``enr_routingrule``.

Effective configuration = app settings (infrastructure, secrets, and the defaults of every business
option) + these rows for business options; where both exist, a valid row wins.

``RowSource`` holds the last good snapshot of the rows and refreshes it:

* **one request** for all rows: a ``$batch`` of the two table reads (``read`` is injected; the
  composition root passes the Dataverse client's batch);
* **at most every** ``interval`` seconds per instance (``BRIDGE_CONFIG_REFRESH_SECONDS``, default 60);
* ``refresh_in_background()`` never waits: it starts a refresh thread when one is due and returns
  (the routing webhook calls it per request and keeps using the last good configuration);
  ``refresh_now()`` reads at once (timers at the start of a run, the routing warm-up);
* listeners get each new snapshot (routing rebuilds its rules in the refresh thread, not in a call).

A row that does not parse is **ignored** (a rule row keeps its last good version when this instance
has one); its ``enr_error`` column is written **once** (only when the text differs from what the row
already says, and cleared when the row is fixed) and the problem is **logged once** per instance;
every other row applies. The parsing itself belongs to each package (``routing.rows``,
``core.setting_rows``): this module knows the sources, not the settings. It imports no job package
and no client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .schema import BRIDGE_SETTING, ERROR_COLUMN, ERROR_LENGTH, ROUTING_RULE, ConfigTable

__all__ = [
    "DEFAULT_REFRESH_SECONDS",
    "ConfigRow",
    "ErrorWriter",
    "Reader",
    "RowProblem",
    "RowSource",
    "RowsSnapshot",
    "read_paths",
]

log = logging.getLogger("bridge.config")

DEFAULT_REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class ConfigRow:
    """One configuration row as read: its id, name (the alternate key), whether it is active
    (``statecode`` 0), its columns by the names rows carry, and the error it shows now."""

    table: str  # logical name
    row_id: str
    name: str
    active: bool
    values: Mapping[str, Any]
    error: str | None
    version: str = ""

    @staticmethod
    def from_record(table: ConfigTable, record: Mapping[str, Any]) -> ConfigRow:
        return ConfigRow(
            table=table.logical_name,
            row_id=str(record.get(table.primary_key) or "").lower(),
            name=str(record.get(table.name_column) or "").strip(),
            active=record.get("statecode", 0) == 0,
            values=dict(record),
            error=record.get(ERROR_COLUMN) or None,
            version=str(record.get("@odata.etag") or record.get("versionnumber") or ""),
        )


@dataclass(frozen=True)
class RowsSnapshot:
    """All configuration rows at one moment (``read_at`` on the monotonic clock)."""

    settings: tuple[ConfigRow, ...] = ()
    rules: tuple[ConfigRow, ...] = ()
    read_at: float = 0.0
    generation: int = 0

    def setting(self, name: str) -> ConfigRow | None:
        return next((r for r in self.settings if r.active and r.name.casefold() == name.casefold()), None)


@dataclass(frozen=True)
class RowProblem:
    """A row that did not apply: which, and why (the text written to its ``enr_error``)."""

    row: ConfigRow
    message: str


def read_paths(user_columns: Sequence[str] = ()) -> tuple[str, str]:
    """The two reads of one refresh (settings, rules), relative to the API root; a rule's fixed target
    user comes expanded with ``user_columns`` (its direct number)."""
    settings = f"{BRIDGE_SETTING.entity_set}?$select={','.join(BRIDGE_SETTING.select())}"
    rules = f"{ROUTING_RULE.entity_set}?$select={','.join(ROUTING_RULE.select())}"
    user = ",".join(["systemuserid", *user_columns])
    return settings, f"{rules}&$expand=enr_targetuser($select={user})"


Reader = Callable[[], tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]]
ErrorWriter = Callable[[ConfigRow, str | None], None]


@dataclass
class _Reported:
    """What this instance has written and logged, so each row's error is written and logged once."""

    logged: set[tuple[str, str]] = field(default_factory=set)


class RowSource:
    """The last good configuration rows of this instance, refreshed at most every ``interval`` s."""

    def __init__(
        self,
        read: Reader,
        *,
        interval: float = DEFAULT_REFRESH_SECONDS,
        write_error: ErrorWriter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._write_error = write_error
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None
        self._snapshot: RowsSnapshot | None = None
        self._last_attempt: float | None = None
        self._listeners: list[Callable[[RowsSnapshot], None]] = []
        self._reported = _Reported()
        self.refreshes = 0  # reads sent (one request each)
        self.failures = 0

    # -- reading ------------------------------------------------------------------------

    def current(self) -> RowsSnapshot | None:
        """The last good snapshot (None before the first successful read)."""
        return self._snapshot

    def due(self) -> bool:
        last = self._last_attempt
        return last is None or self._clock() - last >= self.interval

    def refresh_now(self) -> RowsSnapshot | None:
        """Read the rows now (unless a read is under way: then wait for it); the last good snapshot."""
        running = self._running
        if running is not None:
            running.join()
            return self._snapshot
        with self._lock:
            self._last_attempt = self._clock()
        self._refresh()
        return self._snapshot

    def refresh_if_due(self) -> RowsSnapshot | None:
        """For timers at the start of a run: read when the interval has passed, else the snapshot."""
        return self.refresh_now() if self.due() or self._snapshot is None else self._snapshot

    def refresh_in_background(self) -> None:
        """Start a refresh when one is due and none is running; never waits (the routing hot path)."""
        if not self.due() or self._running is not None:
            return
        with self._lock:
            if self._running is not None or not self.due():
                return
            self._last_attempt = self._clock()
            thread = threading.Thread(target=self._background, name="config-rows-refresh", daemon=True)
            self._running = thread
        thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background refresh (tests and warm-up)."""
        running = self._running
        if running is not None:
            running.join(timeout)

    def _background(self) -> None:
        try:
            self._refresh()
        finally:
            self._running = None

    def _refresh(self) -> None:
        self.refreshes += 1
        try:
            settings, rules = self._read()
        except Exception as error:  # keep the last good snapshot; the next interval tries again
            self.failures += 1
            log.warning(
                "configuration rows unreadable, keeping the last good configuration: %s: %s",
                type(error).__name__,
                str(error)[:200],
            )
            return
        previous = self._snapshot
        snapshot = RowsSnapshot(
            settings=tuple(ConfigRow.from_record(BRIDGE_SETTING, r) for r in settings),
            rules=tuple(ConfigRow.from_record(ROUTING_RULE, r) for r in rules),
            read_at=self._clock(),
            generation=(previous.generation + 1) if previous else 1,
        )
        self._snapshot = snapshot
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:  # one package's listener never stops another's
                log.exception("configuration listener failed")

    # -- listeners and problems -------------------------------------------------------

    def subscribe(self, listener: Callable[[RowsSnapshot], None]) -> None:
        """Call ``listener`` with every new snapshot (and now, with the current one if any)."""
        self._listeners.append(listener)
        if self._snapshot is not None:
            listener(self._snapshot)

    def settle_errors(self, rows: Sequence[ConfigRow], problems: Sequence[RowProblem]) -> None:
        """Make each row's ``enr_error`` say its problem (or nothing): write only rows whose text
        differs, log each (row, problem) once per instance."""
        by_row = {p.row.row_id: p.message[:ERROR_LENGTH] for p in problems}
        for row in rows:
            wanted = by_row.get(row.row_id)
            if wanted is not None and (row.row_id, wanted) not in self._reported.logged:
                self._reported.logged.add((row.row_id, wanted))
                from .telemetry import log_event

                log_event(
                    "config_row_refused",
                    level=logging.WARNING,
                    table=row.table,
                    row=row.name,
                    problem=wanted,
                    fix="correct the row in the Enreach Bridge app; until then it is ignored",
                )
            if (row.error or None) == wanted or self._write_error is None:
                continue
            try:
                self._write_error(row, wanted)
            except Exception as error:  # the row stays as it was; the next refresh tries again
                log.warning("could not write enr_error of %s %s: %s", row.table, row.name, type(error).__name__)
