"""Business options as ``enr_bridgesetting`` rows (issue 19): a row named like the app setting holds
its value, and wins over the app setting, which stays the default.

A row is checked by the very parser of the app settings: the settings are read again with the row's
value in place of the app setting's, and the problems naming that setting are the row's error
(``load`` is injected; it is ``bridge.settings.load_settings``). A bad row is ignored, or keeps its last
good value in this instance; the other rows apply. Only business options can be rows (``options``:
each package declares its own as ``ROW_OPTIONS`` in its ``config.py``; ``bridge.rows`` puts them
together); infrastructure and secrets (URLs, credentials, keys, schedules, storage) stay app
settings, and a row naming one gets an error saying so.

``DEFAULT_CRM_ASSIGNEE`` takes its user from the row's ``User`` lookup (``enr_user``; a GUID typed
in ``Value`` works too): pick the user on the form instead of pasting an id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .rows import ConfigRow, RowProblem
from .schema import BRIDGE_SETTING

__all__ = ["USER_OPTIONS", "SettingRows", "row_value"]

USER_OPTIONS = frozenset({"DEFAULT_CRM_ASSIGNEE"})  # options naming a user: the lookup column holds it

T = TypeVar("T")


def row_value(row: ConfigRow) -> str | None:
    """The text a row gives its option: the picked user for a user option, else ``enr_value``."""
    if row.name.upper() in USER_OPTIONS and row.values.get(f"_{BRIDGE_SETTING.user_column}_value"):
        return str(row.values[f"_{BRIDGE_SETTING.user_column}_value"]).lower()
    value = row.values.get(BRIDGE_SETTING.value_column)
    return None if value is None or str(value).strip() == "" else str(value).strip()


@dataclass
class SettingRows(Generic[T]):
    """Turns setting rows into the effective settings (``T``: what ``load`` returns)."""

    load: Callable[[Mapping[str, str]], T]
    options: Sequence[str] = ()
    last_good: dict[str, str] = field(default_factory=dict)
    _checked: dict[tuple[str, str], str | None] = field(default_factory=dict)  # (name, value) -> problem

    def _problem(self, environ: Mapping[str, str], name: str, value: str) -> str | None:
        key = (name, value)
        if key not in self._checked:
            try:
                self.load({**environ, name: value})
                self._checked[key] = None
            except Exception as error:
                problems: Sequence[Any] = getattr(error, "problems", None) or [str(error)]
                own = [str(p) for p in problems if name in str(p)]
                self._checked[key] = "; ".join(own) if own else None
        return self._checked[key]

    def apply(
        self, environ: Mapping[str, str], rows: Sequence[ConfigRow]
    ) -> tuple[T, dict[str, str], list[RowProblem]]:
        """(effective settings, the values taken from rows by name, the rows' problems)."""
        good: dict[str, str] = {}
        problems: list[RowProblem] = []
        for row in rows:
            if not row.active or not row.row_id:
                continue
            name = row.name.upper()
            if name not in self.options:
                problems.append(
                    RowProblem(
                        row,
                        f"{row.name} is not a business option a row can hold ({', '.join(self.options)}); "
                        "infrastructure and secrets stay in the app settings",
                    )
                )
                continue
            value = row_value(row)
            if value is None:
                continue  # an empty row: the app setting applies
            problem = self._problem(environ, name, value)
            if problem is None:
                good[name] = self.last_good[name] = value
                continue
            kept = self.last_good.get(name)
            if kept is not None:
                good[name] = kept
            suffix = "; its last good value still applies" if kept else "; the app setting applies"
            problems.append(RowProblem(row, f"{problem}{suffix}"))
        try:
            settings = self.load({**environ, **good})
        except Exception:  # rows fine one by one, not together: the app settings alone
            good = {}
            settings = self.load(environ)
        return settings, good, problems
