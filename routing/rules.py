"""Declarative routing rules: an ordered list, read from ``ROUTING_RULES`` (JSON), checked at start.

Each matched caller record is run through the rules in order; the first rule that gives a
target decides for that record. When several records match and they do not all lead to
the same target, the caller is ambiguous and the call is not routed.

Rule kinds::

  {"kind": "owner"}                               the record owner's direct number
      optional "column" (user column; default ROUTING_OWNER_PHONE_COLUMN),
      optional "tables": ["account", "contact", "lead"]
  {"kind": "field", "table": "account", "column": "accountcategorycode", "equals": 1,
   "target": "+358942420001"}                     a field value routes to a fixed number (VIP pool)
  {"kind": "open_case", "target": "owner"}        a caller with an open case goes to the case
      owner's direct number ("owner") or to a fixed number
  {"kind": "language", "table": "contact", "column": "new_preferredlanguage",
   "targets": {"sv": "+358942420002", "en": "+358942420003"}}
  {"kind": "default", "target": "+358942420000"}  any matched caller

Every rule may have a "name" (used in logs and explanations; default "<index>:<kind>").
With no ROUTING_RULES the built-in default is owner routing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .numbers import looks_like_e164

__all__ = ["DEFAULT_RULES", "Candidate", "Rule", "RuleError", "evaluate", "parse_rules"]

TABLES = ("contact", "account", "lead")
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")


class RuleError(ValueError):
    """ROUTING_RULES is malformed; the message names the rule and the problem."""


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    target: str | None = None
    table: str | None = None
    column: str | None = None
    equals: Any = None
    targets: Mapping[str, str] = field(default_factory=dict)
    tables: tuple[str, ...] = TABLES


@dataclass(frozen=True)
class Candidate:
    """What routing knows about one matched record."""

    table: str
    id: str
    name: str | None
    fields: Mapping[str, Any]
    owner: Mapping[str, Any] | None  # the owning user's selected columns, None for team-owned records
    open_case_owners: tuple[Mapping[str, Any], ...] = ()


DEFAULT_RULES: tuple[Rule, ...] = (Rule(name="owner", kind="owner"),)


def _e164(value: Any, where: str) -> str:
    if not isinstance(value, str) or not looks_like_e164(value):
        raise RuleError(f"{where}: target must be an E.164 number such as +358942420000 (got {value!r})")
    return value


def _column(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _COLUMN.match(value):
        raise RuleError(f"{where}: 'column' must be a Dataverse logical column name (got {value!r})")
    return value


def _table(value: Any, where: str) -> str:
    if value not in TABLES:
        raise RuleError(f"{where}: 'table' must be one of {', '.join(TABLES)} (got {value!r})")
    return str(value)


def parse_rules(text: str | None) -> tuple[Rule, ...]:
    """Parse and check ROUTING_RULES; empty means the built-in owner routing."""
    if not text or not text.strip():
        return DEFAULT_RULES
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise RuleError(f"ROUTING_RULES is not valid JSON: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise RuleError("ROUTING_RULES must be a non-empty JSON list of rule objects")
    rules: list[Rule] = []
    names: set[str] = set()
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise RuleError(f"ROUTING_RULES rule {index}: must be a JSON object")
        kind = item.get("kind")
        name = str(item.get("name") or f"{index}:{kind}")
        where = f"ROUTING_RULES rule {index} ({name})"
        if name in names:
            raise RuleError(f"{where}: another rule has the same name")
        names.add(name)
        allowed = {"name", "kind"}
        if kind == "owner":
            allowed |= {"column", "tables"}
            tables = item.get("tables", list(TABLES))
            if not isinstance(tables, list) or not tables:
                raise RuleError(f"{where}: 'tables' must be a non-empty list")
            rule = Rule(
                name,
                kind,
                column=_column(item["column"], where) if "column" in item else None,
                tables=tuple(_table(t, where) for t in tables),
            )
        elif kind == "field":
            allowed |= {"table", "column", "equals", "target"}
            if "equals" not in item:
                raise RuleError(f"{where}: 'equals' is missing (the value that selects these callers)")
            if not isinstance(item["equals"], (str, int, float, bool)):
                raise RuleError(f"{where}: 'equals' must be a string, number or boolean")
            rule = Rule(
                name,
                kind,
                target=_e164(item.get("target"), where),
                table=_table(item.get("table"), where),
                column=_column(item.get("column"), where),
                equals=item["equals"],
            )
        elif kind == "open_case":
            allowed |= {"target"}
            target = item.get("target", "owner")
            rule = Rule(name, kind, target="owner" if target == "owner" else _e164(target, where))
        elif kind == "language":
            allowed |= {"table", "column", "targets"}
            targets = item.get("targets")
            if not isinstance(targets, dict) or not targets:
                raise RuleError(f"{where}: 'targets' must map language values to E.164 numbers")
            rule = Rule(
                name,
                kind,
                table=_table(item.get("table"), where),
                column=_column(item.get("column"), where),
                targets={str(k).casefold(): _e164(v, where) for k, v in targets.items()},
            )
        elif kind == "default":
            allowed |= {"target"}
            rule = Rule(name, kind, target=_e164(item.get("target"), where))
        else:
            raise RuleError(f"{where}: unknown kind {kind!r}; use owner, field, open_case, language or default")
        unknown = set(item) - allowed
        if unknown:
            raise RuleError(f"{where}: unknown keys {sorted(unknown)} for kind {kind!r}")
        rules.append(rule)
    return tuple(rules)


def columns_needed(rules: Sequence[Rule], table: str) -> set[str]:
    """Columns of ``table`` the rules read (beyond the id and name)."""
    return {r.column for r in rules if r.kind in ("field", "language") and r.table == table and r.column}


def user_columns_needed(rules: Sequence[Rule], owner_column: str) -> set[str]:
    return {r.column or owner_column for r in rules if r.kind == "owner"} | (
        {owner_column} if any(r.kind == "open_case" and r.target == "owner" for r in rules) else set()
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return bool(a == b)


def _rule_target(rule: Rule, candidate: Candidate, owner_column: str, region: str) -> str | None:
    from .numbers import to_e164

    if rule.kind == "owner":
        if candidate.table not in rule.tables or not candidate.owner:
            return None
        return to_e164(candidate.owner.get(rule.column or owner_column), region)
    if rule.kind == "field":
        if candidate.table != rule.table or rule.column is None:
            return None
        return rule.target if _same(candidate.fields.get(rule.column), rule.equals) else None
    if rule.kind == "open_case":
        if not candidate.open_case_owners:
            return None
        if rule.target != "owner":
            return rule.target
        numbers = {to_e164(o.get(owner_column), region) for o in candidate.open_case_owners}
        numbers.discard(None)
        return numbers.pop() if len(numbers) == 1 else None
    if rule.kind == "language":
        if candidate.table != rule.table or rule.column is None:
            return None
        value = candidate.fields.get(rule.column)
        return rule.targets.get(str(value).casefold()) if value is not None else None
    if rule.kind == "default":
        return rule.target
    return None


def evaluate(
    rules: Sequence[Rule], candidate: Candidate, *, owner_column: str, region: str
) -> tuple[str | None, str | None]:
    """(target, rule name) of the first rule that routes this record, or (None, None)."""
    for rule in rules:
        target = _rule_target(rule, candidate, owner_column, region)
        if target:
            return target, rule.name
    return None, None
