"""Routing rules as ``enr_routingrule`` rows (issue 19): a row becomes the same JSON object a
``ROUTING_RULES`` entry is and is checked by the same ``rules.parse_rule``, so an error reads the
same wherever it came from.

Columns -> rule keys: ``enr_name`` name, ``enr_kind`` (choice) kind, ``enr_target`` target (or the
direct number of ``enr_targetuser``, a lookup to the user), ``enr_failtarget`` fail_target,
``enr_requireavailable`` require_available, ``enr_pools`` pools (comma or line separated numbers or
queue ids), ``enr_hours`` weekly hours (JSON, e.g. ``{"mon-fri": ["08:00-16:00"]}``) with
``enr_timezone`` and ``enr_holidays`` (dates, comma or line separated) as ``hours`` or, with
``enr_hoursmode`` = outside, ``outside_hours``; ``enr_callertables`` caller_tables; ``enr_table``,
``enr_column``, ``enr_equals``, ``enr_days``, ``enr_targets`` (JSON) as named; ``enr_options``
(JSON) any other key (e.g. ``{"tables": ["account"]}``). Rows run in ``enr_order`` order (then name).

Precedence: while at least one rule row is active, the active rows are the rules; with none, the
app setting ``ROUTING_RULES`` (else the built-in owner rule) applies. A row that does not parse is
left out, or keeps its last good version in this instance, and gets its ``enr_error``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.rows import ConfigRow, RowProblem
from core.schema import ROUTING_RULE

from .rules import Rule, RuleError, parse_rule

__all__ = ["RuleRows", "item_from_row", "row_from_item"]

_SPLIT = re.compile(r"[\s,;]+")
# The ROUTING_RULES keys a rule row has columns for.
_COLUMN_KEYS = frozenset(
    {"name", "kind", "target", "fail_target", "require_available", "pools", "hours", "outside_hours"}
    | {"caller_tables", "table", "column", "equals", "days", "targets"}
)


def _list(text: Any) -> list[str]:
    return [part for part in _SPLIT.split(str(text or "")) if part]


def _json(row: ConfigRow, column: str, label: str) -> Any:
    text = row.values.get(column)
    if text is None or not str(text).strip():
        return None
    try:
        return json.loads(str(text))
    except ValueError as error:
        raise RuleError(f"routing rule '{row.name}': '{label}' is not valid JSON ({error})") from None


def item_from_row(row: ConfigRow, owner_column: str) -> dict[str, Any]:
    """The ROUTING_RULES object this row stands for (raises RuleError for what cannot be read)."""
    values = row.values
    kind = ROUTING_RULE.column("enr_kind").option_label(values.get("enr_kind"))
    if kind is None:
        raise RuleError(f"routing rule '{row.name}': 'Kind' is empty or unknown: choose one")
    item: dict[str, Any] = {"name": row.name, "kind": kind}
    extra = _json(row, "enr_options", "Other options")
    if extra is not None:
        if not isinstance(extra, dict):
            raise RuleError(f"routing rule '{row.name}': 'Other options' must be a JSON object")
        # A key the row has a column for is the column's: an option cannot rename the rule, change
        # its kind or its target behind the form's back.
        shadowed = sorted(set(extra) & _COLUMN_KEYS)
        if shadowed:
            raise RuleError(
                f"routing rule '{row.name}': 'Other options' holds {', '.join(shadowed)}, which the row's "
                "own columns set: fill in those columns and remove them from Other options"
            )
        item.update(extra)
    if values.get("_enr_targetuser_value"):
        user = values.get("enr_targetuser") or {}
        number = user.get(owner_column) if isinstance(user, Mapping) else None
        if not number:
            raise RuleError(
                f"routing rule '{row.name}': the target user has no direct number in {owner_column}: "
                "fill it in on the user, or give a target number"
            )
        item["target"] = str(number).strip()
    elif values.get("enr_target"):
        item["target"] = str(values["enr_target"]).strip()
    if values.get("enr_failtarget"):
        item["fail_target"] = str(values["enr_failtarget"]).strip()
    if values.get("enr_requireavailable") is True:
        item["require_available"] = True
    if values.get("enr_pools"):
        item["pools"] = _list(values["enr_pools"])
    weekly = _json(row, "enr_hours", "Weekly hours")
    if weekly is not None:
        hours = dict(weekly) if isinstance(weekly, dict) and "weekly" in weekly else {"weekly": weekly}
        if values.get("enr_timezone"):
            hours["timezone"] = str(values["enr_timezone"]).strip()
        if values.get("enr_holidays"):
            hours["holidays"] = _list(values["enr_holidays"])
        mode = ROUTING_RULE.column("enr_hoursmode").option_label(values.get("enr_hoursmode")) or "during"
        item["outside_hours" if mode == "outside" else "hours"] = hours
    if values.get("enr_callertables"):
        item["caller_tables"] = _list(values["enr_callertables"])
    for column, key in (("enr_table", "table"), ("enr_column", "column")):
        if values.get(column):
            item[key] = str(values[column]).strip()
    if values.get("enr_equals") is not None and str(values["enr_equals"]) != "":
        text = str(values["enr_equals"])
        try:
            equals = json.loads(text)
        except ValueError:
            equals = text
        item["equals"] = equals if isinstance(equals, str | int | float | bool) else text
    if values.get("enr_days") is not None:
        item["days"] = values["enr_days"]
    targets = _json(row, "enr_targets", "Targets by value")
    if targets is not None:
        item["targets"] = targets
    return item


def row_from_item(item: Mapping[str, Any], order: int) -> dict[str, Any]:
    """The row columns for one ROUTING_RULES object (``python -m ops config import``)."""
    known = _COLUMN_KEYS
    row: dict[str, Any] = {
        "enr_order": order,
        "enr_kind": ROUTING_RULE.column("enr_kind").option_value(str(item["kind"])),
        "enr_target": item.get("target"),
        "enr_failtarget": item.get("fail_target"),
        "enr_requireavailable": bool(item.get("require_available", False)),
        "enr_pools": ", ".join(item["pools"]) if item.get("pools") else None,
        "enr_callertables": ", ".join(item["caller_tables"]) if item.get("caller_tables") else None,
        "enr_table": item.get("table"),
        "enr_column": item.get("column"),
        "enr_equals": json.dumps(item["equals"]) if "equals" in item else None,
        "enr_days": item.get("days"),
        "enr_targets": json.dumps(item["targets"]) if item.get("targets") else None,
    }
    hours = item.get("hours") or item.get("outside_hours")
    if hours:
        row["enr_hours"] = json.dumps(hours.get("weekly", {}))
        row["enr_timezone"] = hours.get("timezone")
        row["enr_holidays"] = ", ".join(hours.get("holidays", [])) or None
        row["enr_hoursmode"] = ROUTING_RULE.column("enr_hoursmode").option_value(
            "outside" if item.get("outside_hours") else "during"
        )
    extra = {k: v for k, v in item.items() if k not in known}
    row["enr_options"] = json.dumps(extra) if extra else None
    return {k: v for k, v in row.items() if v is not None}


@dataclass
class RuleRows:
    """Turns snapshots of rule rows into rules, keeping each row's last good rule in this instance."""

    owner_column: str
    last_good: dict[str, Rule] = field(default_factory=dict)

    def rules(self, rows: Sequence[ConfigRow]) -> tuple[tuple[Rule, ...] | None, list[RowProblem]]:
        """(the rules, or None when no row is active: the app setting applies; the rows' problems)."""
        active = sorted(
            (r for r in rows if r.active and r.row_id),
            key=lambda r: (r.values.get("enr_order") if isinstance(r.values.get("enr_order"), int) else 0, r.name),
        )
        problems: list[RowProblem] = []
        rules: list[Rule] = []
        seen: dict[str, ConfigRow] = {}
        for row in active:
            same = seen.setdefault(" ".join(row.name.split()).casefold(), row)
            if same is not row:  # two rows one name: logs and explain could not tell them apart
                problems.append(
                    RowProblem(row, f"routing rule '{row.name}': another active row has this name; rename one")
                )
                continue
            try:
                rule = parse_rule(
                    item_from_row(row, self.owner_column), where="routing rule row", default_name=row.name
                )
            except (RuleError, ValueError) as error:
                kept = self.last_good.get(row.row_id)
                suffix = (
                    "; its last good version still applies"
                    if kept
                    else (
                        "; the rule is left out (an instance that read a good version of it before keeps that "
                        "until the row is fixed)"
                    )
                )
                problems.append(RowProblem(row, f"{error}{suffix}"))
                if kept is not None:
                    rules.append(kept)
                continue
            self.last_good[row.row_id] = rule
            rules.append(rule)
        if not active:
            return None, problems
        if not rules:
            return None, problems  # every active row is broken: the app setting applies
        return tuple(rules), problems
