"""``python -m ops config show`` and ``python -m ops config import [--dry-run]`` (issue 19).

``show`` prints the effective configuration: every setting with its source (``row`` for an
``enr_bridgesetting`` row that applies, ``app setting``, ``default``), secrets masked, then the
routing rules and where they come from, then every row that does not apply and why.

``import`` writes an existing deployment's business options from its app settings as rows: one
``enr_bridgesetting`` row per business option set in the app settings (``DEFAULT_CRM_ASSIGNEE`` as
the User lookup) and one ``enr_routingrule`` row per ``ROUTING_RULES`` entry (order 10, 20, ...).
It creates the rows that are missing and leaves existing rows alone (a row an administrator edited
wins; ``show`` lists the difference), so running it again changes nothing. The app settings stay as
they are: they remain the defaults a deleted or broken row falls back to.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bridge.rows import owner_column, read_config_rows, row_options
from bridge.settings import SETTING_NAMES, Settings, load_settings
from core.rows import ConfigRow, RowProblem
from core.schema import BRIDGE_SETTING, ROUTING_RULE
from core.setting_rows import USER_OPTIONS, SettingRows
from dataverse import DataverseClient, key_path

__all__ = ["SECRET_NAMES", "import_rows", "masked", "show"]

SECRET_NAMES = frozenset(
    {
        "AZURE_CLIENT_SECRET",
        "ENREACH_SECRET_KEY",
        "ENREACH_WEBHOOK_SECRET",
        "ROUTING_API_KEY",
        "ROUTING_BASIC_PASSWORD",
        "PRESENCE_WEBHOOK_KEY",
        "AzureWebJobsStorage",
    }
)


def masked(name: str, value: str) -> str:
    if name in SECRET_NAMES:
        return "(set, hidden)"
    return value if len(value) <= 120 else value[:117] + "..."


def _read(client: DataverseClient, settings: Settings) -> tuple[list[ConfigRow], list[ConfigRow]]:
    settings_rows, rule_rows = read_config_rows(client, owner_column(settings))
    return (
        [ConfigRow.from_record(BRIDGE_SETTING, r) for r in settings_rows],
        [ConfigRow.from_record(ROUTING_RULE, r) for r in rule_rows],
    )


def show(client: DataverseClient, environ: Mapping[str, str], out: Callable[[str], None] = print) -> int:
    """Print the effective configuration; 0, or 1 when a row does not apply."""
    from routing.rows import RuleRows

    base = load_settings(environ)
    setting_rows, rule_rows = _read(client, base)
    _, from_rows, problems = SettingRows(load=load_settings, options=row_options()).apply(environ, setting_rows)
    routing = base.has("routing")
    rules, rule_problems = RuleRows(owner_column(base) or "").rules(rule_rows) if routing else (None, [])
    problems = problems + rule_problems
    out("settings (source: row = Enreach Bridge app > Settings, app setting, default):")
    width = max(len(n) for n in SETTING_NAMES)
    for name in SETTING_NAMES:
        if name in from_rows:
            shown, source = from_rows[name], "row"
        elif (environ.get(name) or "").strip():
            shown, source = environ[name].strip(), "app setting"
        else:
            shown, source = "", "default"
        overridden = " (overrides the app setting)" if source == "row" and (environ.get(name) or "").strip() else ""
        out(f"  {name.ljust(width)}  {source:<11}  {masked(name, shown)}{overridden}")
    names: list[str] = []
    if not routing:
        out("routing rules: routing is not in BRIDGE_JOBS")
    elif rules is not None:
        out(f"routing rules: {len(rules)} from rows (Enreach Bridge app > Routing rules), in order:")
        names = [r.name for r in rules]
    elif (environ.get("ROUTING_RULES") or "").strip():
        out(f"routing rules: {len(base.routing.rules)} from the app setting ROUTING_RULES (no active rule row):")
        names = [r.name for r in base.routing.rules]
    else:
        out("routing rules: the default (owner routing; no active rule row, no ROUTING_RULES):")
        names = [r.name for r in base.routing.rules]
    for name in names:
        out(f"  {name}")
    if not problems:
        out("problems: none")
        return 0
    out(f"problems: {len(problems)} rows do not apply (their enr_error says the same):")
    for problem in problems:
        out(f"  {_where(problem)}: {problem.message}")
    return 1


def _where(problem: RowProblem) -> str:
    kind = "setting" if problem.row.table == BRIDGE_SETTING.logical_name else "routing rule"
    return f"{kind} row '{problem.row.name}'"


def _wanted(environ: Mapping[str, str], settings: Settings) -> list[tuple[str, str, dict[str, Any]]]:
    """(entity set, name, columns) of every row the app settings stand for."""
    from routing.rows import row_from_item

    wanted: list[tuple[str, str, dict[str, Any]]] = []
    for name in row_options():
        value = (environ.get(name) or "").strip()
        if not value:
            continue
        row: dict[str, Any] = {"enr_description": f"Imported from the app setting {name}"}
        if name in USER_OPTIONS:
            row[f"{BRIDGE_SETTING.user_column}@odata.bind"] = f"/systemusers({uuid.UUID(value)})"
        else:
            row[BRIDGE_SETTING.value_column] = value
        wanted.append((BRIDGE_SETTING.entity_set, name, row))
    text = (environ.get("ROUTING_RULES") or "").strip()
    if text and settings.has("routing"):
        for index, item in enumerate(json.loads(text), start=1):
            rule_name = settings.routing.rules[index - 1].name
            wanted.append((ROUTING_RULE.entity_set, rule_name, row_from_item(item, index * 10)))
    return wanted


def import_rows(
    client: DataverseClient,
    environ: Mapping[str, str],
    *,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
) -> tuple[int, int]:
    """Create the missing rows; (created, already there)."""
    settings = load_settings(environ)  # a bad app setting stops here (exit 2), before any write
    setting_rows, rule_rows = _read(client, settings)
    existing = {
        BRIDGE_SETTING.entity_set: {r.name.casefold() for r in setting_rows},
        ROUTING_RULE.entity_set: {r.name.casefold() for r in rule_rows},
    }
    created = kept = 0
    orders = [r.values.get("enr_order") for r in rule_rows if r.active]
    after = max((o for o in orders if isinstance(o, int)), default=0)
    noted = False
    for entity_set, name, columns in _wanted(environ, settings):
        table = BRIDGE_SETTING if entity_set == BRIDGE_SETTING.entity_set else ROUTING_RULE
        if table is ROUTING_RULE and orders and name.casefold() not in existing[entity_set]:
            # Active rule rows already route: imported rules go after them, never between them.
            columns = {**columns, "enr_order": after + int(columns.get("enr_order", 0))}
            if not noted:
                out(
                    f"note     {len(orders)} active routing rule rows exist: imported rules are added after them "
                    f"(order > {after}) and apply at once; deactivate the ones you do not want"
                )
                noted = True
        label = "setting" if table is BRIDGE_SETTING else "routing rule"
        if name.casefold() in existing[entity_set]:
            kept += 1
            out(f"exists   {label} row {name} (left as it is: the row wins over the app setting)")
            continue
        created += 1
        if dry_run:
            out(f"would create {label} row {name}")
            continue
        client.request(  # create only: If-None-Match * never overwrites a row made meanwhile
            "PATCH",
            key_path(entity_set, {table.name_column: name}),
            json=columns,
            headers={"If-None-Match": "*"},
        )
        out(f"created  {label} row {name}")
    return created, kept
