"""Declarative routing rules: an ordered list, read from ``ROUTING_RULES`` (JSON), checked at start.

Each matched caller record is run through the rules in order; the first rule whose
conditions hold and that gives a target decides for that record. When several records
match and they do not all lead to the same target, the caller is ambiguous and the call
is not routed.

Rule kinds::

  {"kind": "owner"}                               the record owner's direct number
      optional "column" (user column; default ROUTING_OWNER_PHONE_COLUMN),
      optional "tables": ["account", "contact", "lead"], optional "require_available": true
  {"kind": "field", "table": "account", "column": "accountcategorycode", "equals": 1,
   "target": "+358942420001"}                     a field value routes to a fixed number (VIP pool)
  {"kind": "open_case", "target": "owner"}        a caller with an open case goes to the case
      owner's direct number ("owner", optional "require_available") or to a fixed number
  {"kind": "language", "table": "contact", "column": "new_preferredlanguage",
   "targets": {"sv": "+358942420002", "en": "+358942420003"}}
  {"kind": "last_agent", "days": 30}              the user who last completed a phone call with
      the record within ``days`` (optional "column", "require_available")
  {"kind": "default", "target": "+358942420000"}  any matched caller

Conditions, on any rule (all optional, combined with AND): "pools" (the call's bnum or
Enreach's extradata.CurrQueueId is one of these), "hours" / "outside_hours" (see
``routing.hours``), "caller_tables" (the record is a contact/account/lead). Any rule may
give "fail_target" (E.164), answered as FailTarget beside InitialTarget.

Every rule may have a "name" (used in logs and explanations; default "<index>:<kind>").
With no ROUTING_RULES the built-in default is owner routing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.ids import is_guid
from core.schema import CALL_SYNC
from matching import Candidate, LookupNeeds, looks_like_e164, to_e164

from .availability import Availability
from .hours import OpeningHours, parse_hours

__all__ = [
    "DEFAULT_RULES",
    "CallContext",
    "Candidate",
    "Evaluation",
    "Rule",
    "RuleError",
    "Step",
    "evaluate",
    "parse_rule",
    "parse_rules",
]

TABLES = ("contact", "account", "lead")
KINDS = ("owner", "field", "open_case", "language", "last_agent", "default")
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
_CONDITIONS = {"pools", "hours", "outside_hours", "caller_tables", "fail_target"}
AVAILABILITY_COLUMNS = frozenset({"systemuserid", CALL_SYNC.user_id_column})
MAX_LAST_AGENT_DAYS = 365


class RuleError(ValueError):
    """ROUTING_RULES is malformed; the message names the rule and the field."""


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
    days: int = 0
    require_available: bool = False
    fail_target: str | None = None
    pools: frozenset[str] = frozenset()  # E.164 numbers and casefolded queue ids; empty: any pool
    hours: OpeningHours | None = None
    outside_hours: OpeningHours | None = None
    caller_tables: tuple[str, ...] = ()  # empty: any table

    def lookup_needs(self, owner_column: str) -> LookupNeeds:
        """What the caller lookup must fetch for this rule (``matching.NeedsLookup``)."""
        users = AVAILABILITY_COLUMNS if self.require_available else frozenset()
        if self.kind in ("field", "language") and self.table and self.column:
            return LookupNeeds(columns=frozenset({(self.table, self.column)}))
        if self.kind == "owner":
            return LookupNeeds(user_columns=users | {self.column or owner_column})
        if self.kind == "open_case":
            return LookupNeeds(
                user_columns=users | {owner_column} if self.target == "owner" else frozenset(), open_cases=True
            )
        if self.kind == "last_agent":
            return LookupNeeds(user_columns=users | {self.column or owner_column}, last_call_days=self.days)
        return LookupNeeds()


DEFAULT_RULES: tuple[Rule, ...] = (Rule(name="owner", kind="owner"),)


# -- parsing ---------------------------------------------------------------------------------------


def _e164(value: Any, where: str, key: str = "target") -> str:
    if not isinstance(value, str) or not looks_like_e164(value):
        raise RuleError(f"{where}: '{key}' must be an E.164 number such as +358942420000 (got {value!r})")
    return value


def _column(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _COLUMN.match(value):
        raise RuleError(f"{where}: 'column' must be a Dataverse logical column name (got {value!r})")
    return value


def _table(value: Any, where: str, key: str = "table") -> str:
    if value not in TABLES:
        raise RuleError(f"{where}: '{key}' must be one of {', '.join(TABLES)} (got {value!r})")
    return str(value)


def _tables(item: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    tables = item[key]
    if not isinstance(tables, list) or not tables:
        raise RuleError(f"{where}: '{key}' must be a non-empty list of {', '.join(TABLES)}")
    return tuple(_table(t, where, key) for t in tables)


def _pools(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise RuleError(f"{where}: 'pools' must be a non-empty list of pool numbers (E.164) or queue ids")
    pools = set()
    for pool in value:
        if isinstance(pool, str) and pool.startswith("+"):
            pools.add(_e164(pool, where, "pools"))
        elif isinstance(pool, str) and is_guid(pool):
            pools.add(pool.casefold())
        else:
            raise RuleError(f"{where}: 'pools' entries are E.164 numbers or Enreach queue ids (GUIDs) (got {pool!r})")
    return frozenset(pools)


def _hours(value: Any, where: str, key: str) -> OpeningHours:
    try:
        return parse_hours(value, f"{where}: '{key}'")
    except ValueError as error:
        raise RuleError(str(error)) from None


def _available(item: Mapping[str, Any], where: str) -> bool:
    value = item.get("require_available", False)
    if not isinstance(value, bool):
        raise RuleError(f"{where}: 'require_available' must be true or false (got {value!r})")
    return value


def _kind_rule(item: Mapping[str, Any], kind: Any, name: str, where: str) -> tuple[Rule, set[str]]:
    """The kind-specific part of a rule and the keys it allows."""
    if kind == "owner":
        return Rule(
            name,
            kind,
            column=_column(item["column"], where) if "column" in item else None,
            tables=_tables(item, "tables", where) if "tables" in item else TABLES,
            require_available=_available(item, where),
        ), {"column", "tables", "require_available"}
    if kind == "field":
        if "equals" not in item:
            raise RuleError(f"{where}: 'equals' is missing (the value that selects these callers)")
        if not isinstance(item["equals"], (str, int, float, bool)):
            raise RuleError(f"{where}: 'equals' must be a string, number or boolean")
        return Rule(
            name,
            kind,
            target=_e164(item.get("target"), where),
            table=_table(item.get("table"), where),
            column=_column(item.get("column"), where),
            equals=item["equals"],
        ), {"table", "column", "equals", "target"}
    if kind == "open_case":
        target = item.get("target", "owner")
        available = _available(item, where)
        if available and target != "owner":
            raise RuleError(f'{where}: \'require_available\' needs "target": "owner" (a fixed number has no user)')
        return Rule(
            name, kind, target="owner" if target == "owner" else _e164(target, where), require_available=available
        ), {"target", "require_available"}
    if kind == "language":
        targets = item.get("targets")
        if not isinstance(targets, dict) or not targets:
            raise RuleError(f"{where}: 'targets' must map language values to E.164 numbers")
        return Rule(
            name,
            kind,
            table=_table(item.get("table"), where),
            column=_column(item.get("column"), where),
            targets={str(k).casefold(): _e164(v, where, "targets") for k, v in targets.items()},
        ), {"table", "column", "targets"}
    if kind == "last_agent":
        days = item.get("days")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_LAST_AGENT_DAYS:
            raise RuleError(f"{where}: 'days' must be a whole number of days from 1 to {MAX_LAST_AGENT_DAYS}")
        return Rule(
            name,
            kind,
            days=days,
            column=_column(item["column"], where) if "column" in item else None,
            require_available=_available(item, where),
        ), {"days", "column", "require_available"}
    if kind == "default":
        return Rule(name, kind, target=_e164(item.get("target"), where)), {"target"}
    raise RuleError(f"{where}: 'kind' {kind!r} is unknown; use {', '.join(KINDS)}")


def _with_conditions(rule: Rule, item: Mapping[str, Any], where: str) -> Rule:
    pools = _pools(item["pools"], where) if "pools" in item else frozenset()
    hours = _hours(item["hours"], where, "hours") if "hours" in item else None
    outside = _hours(item["outside_hours"], where, "outside_hours") if "outside_hours" in item else None
    if hours and outside:
        raise RuleError(f"{where}: give 'hours' or 'outside_hours', not both (use two rules)")
    caller_tables = _tables(item, "caller_tables", where) if "caller_tables" in item else ()
    fail_target = _e164(item["fail_target"], where, "fail_target") if "fail_target" in item else None
    if fail_target and fail_target in pools:
        raise RuleError(f"{where}: 'fail_target' is one of the rule's 'pools': a failed call would come back")
    if fail_target and fail_target in {rule.target, *rule.targets.values()}:
        raise RuleError(f"{where}: 'fail_target' equals the rule's target: it would try the same number twice")
    return Rule(
        rule.name,
        rule.kind,
        target=rule.target,
        table=rule.table,
        column=rule.column,
        equals=rule.equals,
        targets=rule.targets,
        tables=rule.tables,
        days=rule.days,
        require_available=rule.require_available,
        fail_target=fail_target,
        pools=pools,
        hours=hours,
        outside_hours=outside,
        caller_tables=caller_tables,
    )


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
        rule = parse_rule(item, where=f"ROUTING_RULES rule {index}", default_name=f"{index}:{_kind_of(item)}")
        if rule.name in names:
            raise RuleError(f"ROUTING_RULES rule {index} ({rule.name}): 'name' is used by another rule")
        names.add(rule.name)
        rules.append(rule)
    return tuple(rules)


def _kind_of(item: Any) -> Any:
    return item.get("kind") if isinstance(item, dict) else None


def parse_rule(item: Any, *, where: str, default_name: str) -> Rule:
    """Parse and check one rule (a ROUTING_RULES entry, or the item a routing rule row becomes:
    ``routing.rows``); ``where`` starts each error message."""
    if not isinstance(item, dict):
        raise RuleError(f"{where}: must be a JSON object")
    kind = item.get("kind")
    name = str(item.get("name") or default_name)
    where = f"{where} ({name})"
    rule, allowed = _kind_rule(item, kind, name, where)
    unknown = set(item) - allowed - _CONDITIONS - {"name", "kind"}
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)} for kind {kind!r}")
    return _with_conditions(rule, item, where)


# -- evaluation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallContext:
    """What a rule's conditions look at, besides the record."""

    pool: str  # the call's bnum, E.164 when it is a number
    queue_id: str | None  # extradata.CurrQueueId, when Enreach sent it
    now: datetime  # timezone-aware
    owner_column: str
    region: str
    availability: Callable[[Mapping[str, Any]], Availability]  # of a user record (its selected columns)


@dataclass(frozen=True)
class Step:
    """One rule's outcome for one record (what ``?explain=true`` lists)."""

    rule: str
    outcome: str  # fired | skipped | not reached
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "outcome": self.outcome, "why": self.why}


@dataclass(frozen=True)
class Evaluation:
    target: str | None
    rule: str | None
    fail_target: str | None
    steps: tuple[Step, ...]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return bool(a == b)


def _condition_fails(rule: Rule, candidate: Candidate, call: CallContext) -> str | None:
    """Why the rule's conditions do not hold (None when they all do)."""
    if rule.pools:
        queue = call.queue_id.casefold() if call.queue_id else None
        if call.pool not in rule.pools and queue not in rule.pools:
            return f"condition false: pools (call in {call.pool}" + (f", queue {call.queue_id})" if queue else ")")
    if rule.caller_tables and candidate.table not in rule.caller_tables:
        return f"condition false: caller_tables (the record is a {candidate.table})"
    if rule.hours and not rule.hours.is_open(call.now):
        return f"condition false: hours (closed at {rule.hours.describe(call.now)})"
    if rule.outside_hours and rule.outside_hours.is_open(call.now):
        return f"condition false: outside_hours (open at {rule.outside_hours.describe(call.now)})"
    return None


def _target(rule: Rule, candidate: Candidate, call: CallContext) -> tuple[str | None, Mapping[str, Any] | None, str]:
    """(target, the user it belongs to, why there is none)."""
    phone = rule.column or call.owner_column
    if rule.kind == "owner":
        if candidate.table not in rule.tables:
            return None, None, f"no target: owner routing is not used for {candidate.table} records"
        if not candidate.owner:
            return None, None, "no target: the record is not owned by a user"
        number = to_e164(candidate.owner.get(phone), call.region)
        return number, candidate.owner, f"no target: the owner has no number in {phone}"
    if rule.kind == "field":
        if candidate.table != rule.table or rule.column is None:
            return None, None, f"no target: the rule is for {rule.table} records"
        if _same(candidate.fields.get(rule.column), rule.equals):
            return rule.target, None, ""
        return None, None, f"no target: {rule.column} is {candidate.fields.get(rule.column)!r}, not {rule.equals!r}"
    if rule.kind == "open_case":
        if not candidate.open_case_owners:
            return None, None, "no target: no open case owned by a user"
        if rule.target != "owner":
            return rule.target, None, ""
        numbers = {to_e164(o.get(call.owner_column), call.region): o for o in candidate.open_case_owners}
        numbers.pop(None, None)
        if len(numbers) != 1:
            return None, None, "no target: the open cases' owners have no one direct number"
        number, user = numbers.popitem()
        return number, user, ""
    if rule.kind == "language":
        if candidate.table != rule.table or rule.column is None:
            return None, None, f"no target: the rule is for {rule.table} records"
        value = candidate.fields.get(rule.column)
        target = rule.targets.get(str(value).casefold()) if value is not None else None
        return target, None, f"no target: {rule.column} is {value!r}"
    if rule.kind == "last_agent":
        last = candidate.last_call
        if last is None or last.ended < call.now - timedelta(days=rule.days):
            return None, None, f"no target: no completed phone call with a user in the last {rule.days} days"
        number = to_e164(last.user.get(phone), call.region)
        return number, last.user, f"no target: the last agent has no number in {phone}"
    if rule.kind == "default":
        return rule.target, None, ""
    return None, None, "no target"


def evaluate(rules: Sequence[Rule], candidate: Candidate, call: CallContext) -> Evaluation:
    """Run ``candidate`` through the rules in order; every rule's outcome is kept for explain."""
    steps: list[Step] = []
    for index, rule in enumerate(rules):
        failed = _condition_fails(rule, candidate, call)
        if failed:
            steps.append(Step(rule.name, "skipped", failed))
            continue
        target, user, why = _target(rule, candidate, call)
        if not target:
            steps.append(Step(rule.name, "skipped", why or "no target"))
            continue
        fired = f"target {target}"
        if rule.require_available and user is not None:
            availability = call.availability(user)
            if availability.available is not True:
                what = "unavailable" if availability.available is False else "availability unknown"
                steps.append(Step(rule.name, "skipped", f"owner {what}: {availability.reason}"))
                continue
            fired += f" (owner available: {availability.reason})"
        steps.append(Step(rule.name, "fired", fired))
        steps += [Step(later.name, "not reached", "an earlier rule fired") for later in rules[index + 1 :]]
        return Evaluation(target, rule.name, rule.fail_target, tuple(steps))
    return Evaluation(None, None, None, tuple(steps))
