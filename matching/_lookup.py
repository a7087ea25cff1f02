"""Find the caller's records in Dataverse in one round trip.

With the phone index (``enr_phoneindexes``, kept by ``sync_phone_index``) one GET with
``enr_e164 eq '<E.164>'`` returns the matching contacts, accounts and leads expanded,
with their owning users. Without it, a ``$batch`` of GETs asks each customer table for
the exact forms the number may be stored in (``eq`` through ``Microsoft.Dynamics.CRM.In``,
never ``contains``/``endswith``, which force table scans). While it is not known whether
the index exists, both go in the same ``$batch``; the answer settles it for ten minutes.

What is fetched with each record is what the users of the lookup ask for
(``LookupNeeds``): record columns, columns of the owning user, open cases (one more GET),
the last completed phone call, and the open cases and opportunities of a contact or account
(``open_records``: the call sync's "regarding" rule) expanded in the same round trip.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.schema import CUSTOMER_TABLES, PHONE_INDEX, CustomerTable
from dataverse import BatchRequest, DataverseClient, query_path
from dataverse import filters as f

from ._numbers import stored_forms

__all__ = ["CallerLookup", "Candidate", "LastCall", "LookupNeeds", "LookupResult", "NeedsLookup", "OpenRecord"]

INDEX_RECHECK_SECONDS = 600.0
MAX_BATCH_GETS = 1000  # Dataverse's limit of requests in one $batch
MAX_EXPANDS = 15  # Dataverse's limit of $expand options in one query
_CASE_TABLES = {"contact": "contacts", "account": "accounts"}
# Collection-valued navigation properties from a customer to its phone calls: the calls
# *regarding* it (relationship <Table>_Phonecalls) and the activity parties *involving* it
# (<table>_activity_parties, whose activityid_phonecall is the call). Standard Dataverse names.
_CALLS_REGARDING = {"contact": "Contact_Phonecalls", "account": "Account_Phonecalls", "lead": "Lead_Phonecalls"}
_PARTIES = {
    "contact": "contact_activity_parties",
    "account": "account_activity_parties",
    "lead": "lead_activity_parties",
}
# Open work a contact or account is the customer of: (table, entity set, name column, navigation
# property per customer table). Standard one-to-many relationships on the Customer lookup
# (incident_customer_contacts / incident_customer_accounts, opportunity_customer_*).
_OPEN_WORK = {
    "incident": (
        "incidents",
        "title",
        {"contact": "incident_customer_contacts", "account": "incident_customer_accounts"},
    ),
    "opportunity": (
        "opportunities",
        "name",
        {"contact": "opportunity_customer_contacts", "account": "opportunity_customer_accounts"},
    ),
}
_PARTY_SENDER_OR_RECIPIENT = (1, 2)  # participationtypemask: From, To
_COMPLETED = 1  # statecode of a completed activity


@dataclass(frozen=True)
class LastCall:
    """The latest completed phone call with a record that a user owns."""

    user: Mapping[str, Any]  # the owning user's selected columns
    ended: datetime  # actualend, UTC


@dataclass(frozen=True)
class OpenRecord:
    """An open case (incident) or opportunity whose customer is the matched record."""

    table: str  # "incident" or "opportunity"
    entity_set: str
    id: str
    name: str | None


@dataclass(frozen=True)
class Candidate:
    """What is known about one matched record."""

    table: str
    id: str
    name: str | None
    fields: Mapping[str, Any]
    owner: Mapping[str, Any] | None  # the owning user's selected columns, None for team-owned records
    open_case_owners: tuple[Mapping[str, Any], ...] = ()
    last_call: LastCall | None = None
    open_records: tuple[OpenRecord, ...] = ()  # with LookupNeeds.open_records, expanded in the lookup


@dataclass(frozen=True)
class LookupNeeds:
    """What to fetch with each matched record, beyond its id and name."""

    columns: frozenset[tuple[str, str]] = frozenset()  # (customer table logical name, column)
    user_columns: frozenset[str] = frozenset()  # of owners, case owners and last agents
    open_cases: bool = False  # costs one more GET for callers that matched
    last_call_days: int = 0  # > 0: the last completed call of the past this many days (same round trip)
    # "incident", "opportunity": the open ones of each matched contact/account (same round trip)
    open_records: frozenset[str] = frozenset()

    def __or__(self, other: LookupNeeds) -> LookupNeeds:
        return LookupNeeds(
            self.columns | other.columns,
            self.user_columns | other.user_columns,
            self.open_cases or other.open_cases,
            max(self.last_call_days, other.last_call_days),
            self.open_records | other.open_records,
        )


class NeedsLookup(Protocol):
    """Anything that says what it needs fetched (routing's rules do)."""

    def lookup_needs(self, owner_column: str) -> LookupNeeds: ...


@dataclass(frozen=True)
class LookupResult:
    candidates: tuple[Candidate, ...]
    used_index: bool
    requests: int


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CallerLookup:
    def __init__(
        self,
        client: DataverseClient,
        *,
        phone_columns: Mapping[str, Sequence[str]],
        region: str,
        rules: Iterable[NeedsLookup] = (),
        owner_column: str = "address1_telephone1",
        needs: LookupNeeds | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._client = client
        self._region = region
        self._phone_columns = {t: tuple(c) for t, c in phone_columns.items()}
        merged = needs or LookupNeeds()
        for rule in rules:
            merged = merged | rule.lookup_needs(owner_column)
        self.needs = merged
        self._user_columns = sorted(merged.user_columns)
        self._columns = {
            t.logical_name: sorted(c for table, c in merged.columns if table == t.logical_name) for t in CUSTOMER_TABLES
        }
        self._clock = clock
        self._index_exists: bool | None = None
        self._index_checked = 0.0
        self._lock = threading.Lock()

    # -- query text ---------------------------------------------------------------

    def _select(self, table: CustomerTable) -> list[str]:
        return [table.primary_key, table.name_column, "_ownerid_value", *self._columns[table.logical_name]]

    def _owner_expand(self) -> str | None:
        return f"owninguser($select={','.join(self._user_columns)})" if self._user_columns else None

    def _record_expand(self, table: CustomerTable, since: datetime | None) -> str | None:
        """Owner, and with ``since`` the completed calls regarding or involving the record since then.

        Dataverse refuses ``$orderby``/``$top`` beside a nested ``$expand`` of a collection,
        so the calls come filtered by time and the latest is picked here."""
        parts = [p for p in (self._owner_expand(),) if p]
        for kind in sorted(self.needs.open_records):
            _, name_column, navigation = _OPEN_WORK[kind]
            if table.logical_name in navigation:
                key = f"{kind}id"
                parts.append(
                    f"{navigation[table.logical_name]}($select={key},{name_column};$filter={f.eq('statecode', 0)})"
                )
        if since is not None:
            user = f"owninguser($select={','.join(self._user_columns or ['systemuserid'])})"
            completed = f.and_(f.eq("statecode", _COMPLETED), f.ge("actualend", since))
            parties = f.or_(*(f.eq("participationtypemask", m) for m in _PARTY_SENDER_OR_RECIPIENT))
            parts.append(
                f"{_CALLS_REGARDING[table.logical_name]}($select=actualend;$filter={completed};$expand={user})"
            )
            parts.append(
                f"{_PARTIES[table.logical_name]}($select=participationtypemask;$filter={parties};"
                f"$expand=activityid_phonecall($select=actualend,statecode;$expand={user}))"
            )
        return ",".join(parts) or None

    def _since(self) -> datetime | None:
        days = self.needs.last_call_days
        return self._clock() - timedelta(days=days) if days > 0 else None

    def index_query(self, e164: str) -> str:
        """The one index GET (without last calls; see ``index_queries``)."""
        return self._index_path(f.eq(PHONE_INDEX.number_column, e164), None, CUSTOMER_TABLES)

    def index_queries(self, e164: str, since: datetime | None = None) -> list[str]:
        """GETs of the index for ``e164``: one, or one per customer table when the expansions
        would pass Dataverse's limit of 15 (the last call); sent as one ``$batch``."""
        condition = f.eq(PHONE_INDEX.number_column, e164)
        per_table = (
            1 + (1 if self._user_columns else 0) + (5 if since is not None else 0) + len(self.needs.open_records)
        )
        if per_table * len(CUSTOMER_TABLES) <= MAX_EXPANDS:
            return [self._index_path(condition, since, CUSTOMER_TABLES)]
        return [self._index_path(condition, since, (table,)) for table in CUSTOMER_TABLES]

    def _index_path(self, condition: f.Filter, since: datetime | None, tables: Sequence[CustomerTable]) -> str:
        parts = []
        for table in tables:
            options = "$select=" + ",".join(self._select(table))
            expand = self._record_expand(table, since)
            if expand:
                options += f";$expand={expand}"
            parts.append(f"{table.index_lookup}({options})")
        if len(tables) == 1:
            condition = f.and_(condition, f.ne(f"_{tables[0].index_lookup}_value", None))
        return query_path(
            PHONE_INDEX.entity_set,
            select=[PHONE_INDEX.key_column, PHONE_INDEX.number_column],
            filter=condition,
            expand=",".join(parts),
        )

    def forms_queries(self, e164: str, since: datetime | None = None) -> list[tuple[CustomerTable, str]]:
        forms = stored_forms(e164, self._region)
        queries = []
        for table in CUSTOMER_TABLES:
            columns = self._phone_columns.get(table.logical_name, ())
            if not columns:
                continue
            condition = f.or_(*(f.in_(column, forms) for column in columns))
            queries.append(
                (
                    table,
                    query_path(
                        table.entity_set,
                        select=self._select(table),
                        filter=condition,
                        expand=self._record_expand(table, since),
                    ),
                )
            )
        return queries

    # -- the round trip -----------------------------------------------------------

    def _index_state(self) -> bool | None:
        with self._lock:
            if self._index_exists is False and time.monotonic() - self._index_checked > INDEX_RECHECK_SECONDS:
                return None
            return self._index_exists

    def _settle_index(self, exists: bool) -> None:
        with self._lock:
            self._index_exists, self._index_checked = exists, time.monotonic()

    def find(self, e164: str, *, deadline: float | None = None) -> LookupResult:
        state = self._index_state()
        since = self._since()
        found: dict[tuple[str, str], Candidate] = {}
        requests = 1
        used_index = state is True
        index_paths = self.index_queries(e164, since)
        if state is True and len(index_paths) == 1:
            page = self._client.get_page(index_paths[0], deadline=deadline)
            self._collect_index(page.records, found, since)
        else:
            items = [BatchRequest("GET", p) for p in index_paths] if state is not False else []
            forms = self.forms_queries(e164, since) if state is not True else []
            items += [BatchRequest("GET", path) for _, path in forms]
            answers = self._client.batch(items, continue_on_error=True, idempotent=True, deadline=deadline)
            if state is not False:
                index_answers, answers = answers[: len(index_paths)], answers[len(index_paths) :]
                if state is None:
                    self._settle_index(index_answers[0].ok)
                if index_answers[0].ok or state is True:
                    used_index = True
                    for answer in index_answers:
                        answer.raise_for_status()
                        self._collect_index(answer.body.get("value", []), found, since)
            for (table, _), answer in zip(forms, answers, strict=True):
                answer.raise_for_status()
                for record in answer.body.get("value", []):
                    self._add(found, table, record, since)
        candidates = tuple(found.values())
        if self.needs.open_cases and candidates:
            candidates = self._with_open_cases(candidates, deadline)
            requests += 1
        return LookupResult(candidates, used_index=used_index, requests=requests)

    def find_many(self, numbers: Sequence[str], *, chunk: int = 100) -> dict[str, tuple[Candidate, ...]]:
        """Candidates for many E.164 numbers (a page of calls): one query per ``chunk`` numbers
        through the index, or one ``$batch`` of exact-form GETs per ``chunk`` numbers without it."""
        wanted = list(dict.fromkeys(numbers))
        found: dict[str, dict[tuple[str, str], Candidate]] = {n: {} for n in wanted}
        if not wanted:
            return {}
        if self._index_state() is None:
            answer = self._client.batch(
                [BatchRequest("GET", self._index_path(f.eq(PHONE_INDEX.number_column, ""), None, CUSTOMER_TABLES))],
                continue_on_error=True,
                idempotent=True,
            )
            self._settle_index(bool(answer) and answer[0].ok)
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            if self._index_state():
                path: str | None = self._index_path(f.in_(PHONE_INDEX.number_column, part), None, CUSTOMER_TABLES)
                while path:
                    page = self._client.get_page(path)
                    for row in page.records:
                        bucket = found.get(str(row.get(PHONE_INDEX.number_column)))
                        if bucket is not None:
                            self._collect_index([row], bucket, None)
                    path = page.next_link
                continue
            requests = [(number, table, path) for number in part for table, path in self.forms_queries(number)]
            for first in range(0, len(requests), MAX_BATCH_GETS):
                group = requests[first : first + MAX_BATCH_GETS]
                responses = self._client.batch(
                    [BatchRequest("GET", p) for _, _, p in group], continue_on_error=True, idempotent=True
                )
                for (number, table, _), response in zip(group, responses, strict=True):
                    response.raise_for_status()
                    for record in response.body.get("value", []):
                        self._add(found[number], table, record, None)
        return {number: tuple(bucket.values()) for number, bucket in found.items()}

    def _collect_index(
        self, rows: Sequence[Mapping[str, Any]], found: dict[tuple[str, str], Candidate], since: datetime | None
    ) -> None:
        for row in rows:
            for table in CUSTOMER_TABLES:
                record = row.get(table.index_lookup)
                if isinstance(record, dict):
                    self._add(found, table, record, since)

    @staticmethod
    def _add(
        found: dict[tuple[str, str], Candidate],
        table: CustomerTable,
        record: Mapping[str, Any],
        since: datetime | None,
    ) -> None:
        record_id = str(record[table.primary_key]).lower()
        owner = record.get("owninguser")
        navigation = {"owninguser", _CALLS_REGARDING[table.logical_name], _PARTIES[table.logical_name]}
        open_records: list[OpenRecord] = []
        for kind, (entity_set, name_column, by_table) in _OPEN_WORK.items():
            nav = by_table.get(table.logical_name)
            if nav is None:
                continue
            navigation.add(nav)
            for row in record.get(nav) or []:
                if isinstance(row, dict) and row.get(f"{kind}id"):
                    open_records.append(
                        OpenRecord(kind, entity_set, str(row[f"{kind}id"]).lower(), row.get(name_column))
                    )
        found[(table.logical_name, record_id)] = Candidate(
            table=table.logical_name,
            id=record_id,
            name=record.get(table.name_column),
            fields={k: v for k, v in record.items() if "@" not in k and k not in navigation},
            owner=owner if isinstance(owner, dict) else None,
            last_call=_last_call(table, record, since) if since is not None else None,
            open_records=tuple(open_records),
        )

    def _with_open_cases(self, candidates: tuple[Candidate, ...], deadline: float | None) -> tuple[Candidate, ...]:
        """Open cases of the matched contacts/accounts, with their owners: one more GET."""
        ids = [c.id for c in candidates if c.table in _CASE_TABLES]
        if not ids:
            return candidates
        page = self._client.query_page(
            "incidents",
            select=["incidentid", "_customerid_value"],
            filter=f.and_(f.eq("statecode", 0), f.in_("_customerid_value", ids)),
            expand=f"owninguser($select={','.join(self._user_columns or ['systemuserid'])})",
            deadline=deadline,
        )
        owners: dict[str, list[Mapping[str, Any]]] = {}
        for case in page.records:
            if isinstance(case.get("owninguser"), dict):
                owners.setdefault(str(case["_customerid_value"]).lower(), []).append(case["owninguser"])
        return tuple(
            Candidate(
                c.table, c.id, c.name, c.fields, c.owner, tuple(owners.get(c.id, ())), c.last_call, c.open_records
            )
            for c in candidates
        )


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _last_call(table: CustomerTable, record: Mapping[str, Any], since: datetime) -> LastCall | None:
    """The latest completed, user-owned call regarding (or with) the record since ``since``."""
    calls: list[Mapping[str, Any]] = [c for c in record.get(_CALLS_REGARDING[table.logical_name]) or [] if c]
    for party in record.get(_PARTIES[table.logical_name]) or []:
        call = party.get("activityid_phonecall") if isinstance(party, dict) else None
        if isinstance(call, dict) and call.get("statecode") == _COMPLETED:
            calls.append(call)
    best: LastCall | None = None
    for call in calls:
        ended, user = _when(call.get("actualend")), call.get("owninguser")
        if ended is None or ended < since or not isinstance(user, dict):
            continue
        if best is None or ended > best.ended:
            best = LastCall(user, ended)
    return best
