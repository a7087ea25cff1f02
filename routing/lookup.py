"""Find the caller's records in Dataverse in one round trip.

With the phone index (``enr_phoneindexes``, kept by ``sync_phone_index``) one GET with
``enr_e164 eq '<E.164>'`` returns the matching contacts, accounts and leads expanded,
with their owning users. Without it, a ``$batch`` of GETs asks each customer table for
the exact forms the number may be stored in (``eq`` through ``Microsoft.Dynamics.CRM.In``,
never ``contains``/``endswith``, which force table scans). While it is not known whether
the index exists, both go in the same ``$batch``; the answer settles it for ten minutes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.schema import CUSTOMER_TABLES, PHONE_INDEX, CustomerTable
from dataverse import BatchRequest, DataverseClient, query_path
from dataverse import filters as f

from .numbers import stored_forms
from .rules import Candidate, Rule, columns_needed, user_columns_needed

__all__ = ["CallerLookup", "LookupResult"]

INDEX_RECHECK_SECONDS = 600.0
MAX_BATCH_GETS = 1000  # Dataverse's limit of requests in one $batch
_CASE_TABLES = {"contact": "contacts", "account": "accounts"}


@dataclass(frozen=True)
class LookupResult:
    candidates: tuple[Candidate, ...]
    used_index: bool
    requests: int


class CallerLookup:
    def __init__(
        self,
        client: DataverseClient,
        *,
        rules: Sequence[Rule],
        owner_column: str,
        phone_columns: Mapping[str, Sequence[str]],
        region: str,
        extra_columns: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``extra_columns``: more columns to read per table, e.g. the call sync's
        ``{"contact": ["_parentcustomerid_value"]}`` to prefer a contact whose account also matched."""
        self._client = client
        self._region = region
        self._phone_columns = {t: tuple(c) for t, c in phone_columns.items()}
        self._user_columns = sorted(user_columns_needed(rules, owner_column))
        self._owner_column = owner_column
        self._needs_cases = any(r.kind == "open_case" for r in rules)
        self._columns = {
            t.logical_name: sorted(
                columns_needed(rules, t.logical_name) | set((extra_columns or {}).get(t.logical_name, ()))
            )
            for t in CUSTOMER_TABLES
        }
        self._index_exists: bool | None = None
        self._index_checked = 0.0
        self._lock = threading.Lock()

    # -- query text ---------------------------------------------------------------

    def _select(self, table: CustomerTable) -> list[str]:
        return [table.primary_key, table.name_column, "_ownerid_value", *self._columns[table.logical_name]]

    def _owner_expand(self) -> str | None:
        return f"owninguser($select={','.join(self._user_columns)})" if self._user_columns else None

    def index_query(self, e164: str) -> str:
        return self._index_path(f.eq(PHONE_INDEX.number_column, e164))

    def _index_path(self, condition: f.Filter) -> str:
        owner = self._owner_expand()
        parts = []
        for table in CUSTOMER_TABLES:
            options = "$select=" + ",".join(self._select(table))
            if owner:
                options += f";$expand={owner}"
            parts.append(f"{table.index_lookup}({options})")
        return query_path(
            PHONE_INDEX.entity_set,
            select=[PHONE_INDEX.key_column, PHONE_INDEX.number_column],
            filter=condition,
            expand=",".join(parts),
        )

    def forms_queries(self, e164: str) -> list[tuple[CustomerTable, str]]:
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
                        table.entity_set, select=self._select(table), filter=condition, expand=self._owner_expand()
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
        found: dict[tuple[str, str], Candidate] = {}
        requests = 1
        used_index = state is True
        if state is True:
            page = self._client.get_page(self.index_query(e164), deadline=deadline)
            self._collect_index(page.records, found)
        else:
            items: list[BatchRequest] = []
            if state is None:
                items.append(BatchRequest("GET", self.index_query(e164)))
            forms = self.forms_queries(e164)
            items += [BatchRequest("GET", path) for _, path in forms]
            answers = self._client.batch(items, continue_on_error=True, idempotent=True, deadline=deadline)
            if state is None:
                index_answer, answers = answers[0], answers[1:]
                self._settle_index(index_answer.ok)
                if index_answer.ok:
                    used_index = True
                    self._collect_index(index_answer.body.get("value", []), found)
            for (table, _), answer in zip(forms, answers, strict=True):
                answer.raise_for_status()
                for record in answer.body.get("value", []):
                    self._add(found, table, record)
        candidates = tuple(found.values())
        if self._needs_cases and candidates:
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
                [BatchRequest("GET", self._index_path(f.eq(PHONE_INDEX.number_column, "")))],
                continue_on_error=True,
                idempotent=True,
            )
            self._settle_index(bool(answer) and answer[0].ok)
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            if self._index_state():
                path: str | None = self._index_path(f.in_(PHONE_INDEX.number_column, part))
                while path:
                    page = self._client.get_page(path)
                    for row in page.records:
                        bucket = found.get(str(row.get(PHONE_INDEX.number_column)))
                        if bucket is not None:
                            self._collect_index([row], bucket)
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
                        self._add(found[number], table, record)
        return {number: tuple(bucket.values()) for number, bucket in found.items()}

    def _collect_index(self, rows: Sequence[Mapping[str, Any]], found: dict[tuple[str, str], Candidate]) -> None:
        for row in rows:
            for table in CUSTOMER_TABLES:
                record = row.get(table.index_lookup)
                if isinstance(record, dict):
                    self._add(found, table, record)

    @staticmethod
    def _add(found: dict[tuple[str, str], Candidate], table: CustomerTable, record: Mapping[str, Any]) -> None:
        record_id = str(record[table.primary_key]).lower()
        owner = record.get("owninguser")
        found[(table.logical_name, record_id)] = Candidate(
            table=table.logical_name,
            id=record_id,
            name=record.get(table.name_column),
            fields={k: v for k, v in record.items() if "@" not in k and k != "owninguser"},
            owner=owner if isinstance(owner, dict) else None,
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
            expand=f"owninguser($select={self._owner_column})",
            deadline=deadline,
        )
        owners: dict[str, list[Mapping[str, Any]]] = {}
        for case in page.records:
            if isinstance(case.get("owninguser"), dict):
                owners.setdefault(str(case["_customerid_value"]).lower(), []).append(case["owninguser"])
        return tuple(
            Candidate(c.table, c.id, c.name, c.fields, c.owner, tuple(owners.get(c.id, ()))) for c in candidates
        )
