"""Bulk operation messages and derived columns, for the Dataverse emulator.

``POST <entity set>/Microsoft.Dynamics.CRM.CreateMultiple | UpdateMultiple | UpsertMultiple`` with
``{"Targets": [...]}``, as MicrosoftDocs/powerapps-docs ``developer/data-platform/bulk-operations.md``
("Use bulk operation messages") describes them:

* every target must carry ``@odata.type`` ``Microsoft.Dynamics.CRM.<table>``, and all targets are
  of the collection's table;
* on a standard table the operation is one transaction: any error rolls back every target;
* ``CreateMultiple`` answers 200 with ``CreateMultipleResponse`` ``Ids``; ``UpdateMultiple`` 204;
  ``UpsertMultiple`` 200 with one ``Results`` entry per target (``RecordCreated``). An upsert
  target names its row by ``@odata.id`` (``contacts(key='v')``), else by the values of an
  alternate key or the primary key in the target, else creates it;
* availability: "not all standard tables support these messages". The table reference pages list
  them per table: ``reference/entities/contact.md`` lists CreateMultiple, UpdateMultiple and
  UpsertMultiple, ``phonecall.md`` lists none of them. Custom tables have them. ``BULK_TABLES``
  holds the built-in tables that have them; ``table.definition["bulk"]`` overrides it (a test or
  a benchmark can ask "what if"). A table without them answers 400 naming the message.

Server time: each target is one operation (``_protection.py``), as each request inside a
``$batch`` is; Microsoft says bulk messages are faster per row but gives no figure, so the
emulator does not invent one.

Also here: ``fullname`` of contacts, leads and users derived from ``firstname`` and ``lastname``
(contact.md: FullName "combines and shows the contact's first and last names"; the default full
name format is "First Name Last Name"), and ``@odata.count`` (``webapi/query/count-rows.md``: the
count of matching rows, at most 5,000).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ._server import Request, Response, json_response

if TYPE_CHECKING:
    from .dataverse import DataverseEmulator, Table

__all__ = ["BULK_MESSAGES", "BULK_TABLES", "bulk_available", "count_of", "derive_names", "handle_bulk"]

BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
# Built-in tables whose reference page lists the bulk messages (reference/entities/contact.md,
# account.md and lead.md list CreateMultiple; phonecall.md lists none).
BULK_TABLES = frozenset({"contact", "account", "lead"})
_NAMED = frozenset({"contact", "lead", "systemuser"})
_ACTION = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*)/Microsoft\.Dynamics\.CRM\.(CreateMultiple|UpdateMultiple|UpsertMultiple)$"
)
_MAX_COUNT = 5000


def count_of(rows: list[dict[str, Any]]) -> int:
    return min(len(rows), _MAX_COUNT)


def derive_names(logical_name: str, row: dict[str, Any], body: dict[str, Any]) -> None:
    """Set ``fullname`` from ``firstname`` and ``lastname`` when a write changes either."""
    if logical_name in _NAMED and ("firstname" in body or "lastname" in body):
        parts = [str(row[c]).strip() for c in ("firstname", "lastname") if row.get(c)]
        row["fullname"] = " ".join(p for p in parts if p) or None


def bulk_available(table: Table) -> bool:
    override = table.definition.get("bulk")
    if override is not None:
        return bool(override)
    return bool(table.definition.get("custom")) or table.logical_name in BULK_TABLES


class _Rollback(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("bulk operation failed")
        self.response = response


def handle_bulk(
    emulator: DataverseEmulator, request: Request, resource: str, content_ids: dict[str, str]
) -> Response | None:
    match = _ACTION.match(resource)
    if match is None:
        return None
    from .dataverse import DataverseError

    if request.method != "POST":
        raise DataverseError(405, "0x80060888", f"{match.group(2)} is an action: use POST.")
    table, message = emulator.table(match.group(1)), match.group(2)
    if not bulk_available(table):
        raise DataverseError(
            400,
            "0x80060888",
            f"The '{message}' method does not support entities of type '{table.logical_name}'.",
        )
    body = request.json()
    targets = body.get("Targets") if isinstance(body, dict) else None
    if not isinstance(targets, list) or not targets or not all(isinstance(t, dict) for t in targets):
        raise DataverseError(400, "0x80060888", f"{message} needs a non-empty Targets array of records.")
    expected = f"Microsoft.Dynamics.CRM.{table.logical_name}"
    for index, target in enumerate(targets):
        if str(target.get("@odata.type", "")).lstrip("#") != expected:
            raise DataverseError(
                400,
                "0x80060888",
                f'Targets[{index}] needs "@odata.type": "{expected}" (every target of {message} must set it).',
            )
    emulator._operations = len(targets)  # each target is one operation of server time
    return _transaction(emulator, table, message, targets, request, content_ids)


def _transaction(
    emulator: DataverseEmulator,
    table: Table,
    message: str,
    targets: list[dict[str, Any]],
    request: Request,
    content_ids: dict[str, str],
) -> Response:
    """Run every target in one transaction (the change-set journal): an error rolls all back."""
    from .dataverse import DataverseError

    outer = next(iter(emulator.tables.values())).journal
    journal: list[tuple[Table, str, dict[str, Any] | None]] = outer if outer is not None else []
    mark = len(journal)
    if outer is None:
        for each in emulator.tables.values():
            each.journal = journal
    try:
        if message == "CreateMultiple":
            ids = [str(emulator._insert(table, _fields(t), content_ids)[table.primary_key]) for t in targets]
            return json_response(
                200,
                {
                    "@odata.context": f"{emulator.url}/api/data/v9.2/$metadata"
                    "#Microsoft.Dynamics.CRM.CreateMultipleResponse",
                    "Ids": ids,
                },
                {"OData-Version": "4.0"},
            )
        if message == "UpdateMultiple":
            for target in targets:
                row_id = target.get(table.primary_key)
                if not row_id:
                    raise DataverseError(
                        400, "0x80040203", f"Each UpdateMultiple target needs its {table.primary_key}."
                    )
                _write(emulator, table, {table.primary_key: str(row_id).lower()}, target, content_ids, create=False)
            return Response(204, headers={"OData-Version": "4.0"})
        results = []
        for target in targets:
            key = _upsert_key(emulator, table, target)
            created = _write(emulator, table, key, target, content_ids, create=True)
            results.append(
                {"RecordCreated": created, "Target": {"@odata.type": f"#Microsoft.Dynamics.CRM.{table.logical_name}"}}
            )
        return json_response(
            200,
            {
                "@odata.context": f"{emulator.url}/api/data/v9.2/$metadata"
                "#Microsoft.Dynamics.CRM.UpsertMultipleResponse",
                "Results": results,
            },
            {"OData-Version": "4.0"},
        )
    except DataverseError:
        for each in emulator.tables.values():
            each.journal = None
        for owner, row_id, before in reversed(journal[mark:]):
            if before is None:
                owner.remove(row_id)
            else:
                owner.put(row_id, before)
        del journal[mark:]
        raise
    finally:
        for each in emulator.tables.values():
            each.journal = outer


def _fields(target: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in target.items() if k not in ("@odata.type", "@odata.id")}


def _upsert_key(emulator: DataverseEmulator, table: Table, target: dict[str, Any]) -> dict[str, Any]:
    """The row an upsert target names: ``@odata.id``, else an alternate key's values, else the primary key."""
    odata_id = str(target.get("@odata.id", ""))
    if odata_id:
        match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$", odata_id)
        if match is None or match.group(1) != table.entity_set:
            from .dataverse import DataverseError

            raise DataverseError(400, "0x80060888", f"Invalid @odata.id '{odata_id}' for {table.entity_set}.")
        return emulator._parse_key(table, match.group(2))
    for columns in table.alternate_keys.values():
        if all(target.get(c) is not None for c in columns):
            return {c: target[c] for c in columns}
    if target.get(table.primary_key):
        return {table.primary_key: str(target[table.primary_key]).lower()}
    return {}


def _write(
    emulator: DataverseEmulator,
    table: Table,
    key: dict[str, Any],
    target: dict[str, Any],
    content_ids: dict[str, str],
    *,
    create: bool,
) -> bool:
    """Update the row ``key`` names (or create it when ``create``); True when it was created."""
    from .dataverse import _now

    row = emulator._find(table, key) if key else None
    body = _fields(target)
    if row is None:
        if not create:
            raise emulator._not_found(table, key)
        preset = {} if list(key) == [table.primary_key] else dict(key)
        if list(key) == [table.primary_key]:
            body = {**body, table.primary_key: key[table.primary_key]}
        emulator._insert(table, body, content_ids, preset=preset)
        return True
    candidate = dict(row)
    body.pop(table.primary_key, None)
    emulator._apply(table, candidate, body, creating=False, content_ids=content_ids)
    derive_names(table.logical_name, candidate, body)
    own_id = str(row[table.primary_key]).lower()
    emulator._check_unique(table, candidate, own_id)
    candidate["modifiedon"] = _now()
    candidate["versionnumber"] = emulator._next_version()
    table.put(own_id, candidate)
    return False
