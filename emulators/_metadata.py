"""The metadata Web API subset provisioning and the doctor use, for the Dataverse emulator.

GET/POST ``EntityDefinitions``, ``EntityDefinitions(LogicalName='x')/Attributes`` and ``/Keys``,
POST ``RelationshipDefinitions`` (one-to-many, creating the lookup), the
``RetrieveUserPrivilegeByPrivilegeName`` function on ``systemusers(<id>)``, and solutions:
a metadata POST with ``MSCRM.SolutionUniqueName`` must name an existing unmanaged solution
whose publisher's prefix starts the new component's schema name, and the component is added
to it (``solutioncomponents``); the ``AddSolutionComponent`` action adds an existing one.
Keys report ``EntityKeyIndexStatus`` (``emulator.key_status``, default Active).
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from ._entitydefs import TYPE_OF_METADATA, canonical, handle_definitions
from ._server import Request, Response, json_response

if TYPE_CHECKING:
    from .dataverse import DataverseEmulator, Table

__all__ = ["COMPONENT_TYPES", "handle_metadata", "metadata_id", "pluralize", "record_view_in_solution"]

# solutioncomponent.componenttype values (Dataverse's componenttype choice)
COMPONENT_TYPES = {
    "table": 1,
    "column": 2,
    "relationship": 10,
    "key": 14,
    "view": 26,  # savedquery
    "sitemap": 62,
    "app": 80,  # appmodule
}


def metadata_id(logical: str, kind: str = "", name: str = "") -> str:
    """A stable MetadataId for a table (``kind`` empty), a column or a key."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, logical if not kind else f"{logical}/{kind}/{name}"))


_ENTITY = re.compile(
    r"^EntityDefinitions\(LogicalName='([a-z0-9_]+)'\)(?:/(Attributes|Keys)(?:\(LogicalName='([a-z0-9_]+)'\))?)?$"
)
_PRIVILEGE = re.compile(
    r"^systemusers\(([0-9a-fA-F-]{36})\)/Microsoft\.Dynamics\.CRM\.RetrieveUserPrivilegeByPrivilegeName"
    r"\(PrivilegeName='([A-Za-z_]+)'\)$"
)


def pluralize(name: str) -> str:
    """How Dataverse names the entity set of a new table."""
    if name.endswith("y") and not name.endswith(("ay", "ey", "oy", "uy")):
        return name[:-1] + "ies"
    if name.endswith(("s", "x", "z", "ch", "sh")):
        return name + "es"
    return name + "s"


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})


def _table_by_logical(emulator: DataverseEmulator, logical: str) -> Table | None:
    return next((t for t in emulator.tables.values() if t.logical_name == logical), None)


def _created(emulator: DataverseEmulator, path: str) -> Response:
    location = f"{emulator.url}/api/data/v9.2/{path}"
    return Response(204, headers={"OData-Version": "4.0", "OData-EntityId": location})


def handle_metadata(emulator: DataverseEmulator, request: Request, resource: str) -> Response | None:
    privilege = _PRIVILEGE.match(resource)
    if privilege and request.method == "GET":
        user, name = privilege.group(1).lower(), privilege.group(2)
        if user not in emulator.table("systemusers").rows:
            return _error(404, "0x80040217", f"systemuser With Id = {user} Does Not Exist")
        granted = (
            []
            if name in emulator.denied_privileges
            else [
                {
                    "Depth": "Global",
                    "PrivilegeName": name,
                    "PrivilegeId": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                    "BusinessUnitId": "00000000-0000-0000-0000-0000000000b0",
                }
            ]
        )
        return json_response(200, {"RolePrivileges": granted})
    resource = canonical(emulator, resource)  # EntityDefinitions(<MetadataId>) as (LogicalName='x')
    definitions = handle_definitions(emulator, request, resource)
    if definitions is not None:
        return definitions
    if resource == "AddSolutionComponent" and request.method == "POST":
        return _add_component(emulator, request.json() or {})
    if request.method == "POST" and (
        resource in ("RelationshipDefinitions", "EntityDefinitions") or _ENTITY.match(resource)
    ):
        refused = _check_solution(emulator, request)
        if refused is not None:
            return refused
    if resource == "RelationshipDefinitions" and request.method == "POST":
        return _in_solution(emulator, request, _relationship(emulator, request.json() or {}))
    if resource == "EntityDefinitions" and request.method == "POST":
        return _in_solution(emulator, request, _create_table(emulator, request.json() or {}))
    match = _ENTITY.match(resource)
    if not match:
        return None
    logical, part, name = match.groups()
    table = _table_by_logical(emulator, logical)
    if table is None:
        return _error(404, "0x80040217", f"Could not find an entity with name {logical}.")
    if part is None and request.method == "GET":
        return json_response(
            200,
            {
                "LogicalName": logical,
                "EntitySetName": table.entity_set,
                "PrimaryIdAttribute": table.primary_key,
                "MetadataId": metadata_id(logical),
            },
        )
    if part == "Attributes" and name and request.method == "GET":
        if name != table.primary_key and name not in table.columns and f"_{name}_value" not in table.columns:
            return _error(404, "0x80040217", f"Could not find an attribute with name {name} on {logical}.")
        return json_response(
            200, {"LogicalName": name, "EntityLogicalName": logical, "MetadataId": metadata_id(logical, "column", name)}
        )
    if part == "Keys" and name and request.method == "GET":
        if name not in table.alternate_keys:
            return _error(404, "0x80040217", f"Could not find a key with name {name} on {logical}.")
        return json_response(
            200,
            {
                "LogicalName": name,
                "KeyAttributes": list(table.alternate_keys[name]),
                "EntityKeyIndexStatus": emulator.key_status.get(name, "Active"),
                "MetadataId": metadata_id(logical, "key", name),
            },
        )
    if part == "Attributes" and not name and request.method == "POST":
        body = request.json() or {}
        column = str(body.get("SchemaName", "")).lower()
        if not column or column in table.columns:
            return _error(400, "0x80044363", f"An attribute named {column!r} already exists or is invalid.")
        emulator.add_column(table.entity_set, column)
        _declare(table, column, body)
        return _in_solution(
            emulator,
            request,
            _created(
                emulator,
                f"EntityDefinitions({metadata_id(logical)})/Attributes({metadata_id(logical, 'column', column)})",
            ),
        )
    if part == "Keys" and not name and request.method == "POST":
        body = request.json() or {}
        key = str(body.get("SchemaName", "")).lower()
        columns = [str(c).lower() for c in body.get("KeyAttributes", [])]
        missing = [c for c in columns if c not in table.columns]
        if not key or not columns or missing:
            return _error(400, "0x80048cf8", f"A key needs existing columns (missing: {missing}).")
        emulator.add_alternate_key(table.entity_set, key, columns)
        return _in_solution(
            emulator,
            request,
            _created(emulator, f"EntityDefinitions({metadata_id(logical)})/Keys({metadata_id(logical, 'key', key)})"),
        )
    return _error(405, "0x80060888", f"The metadata operation {request.method} {resource} is not emulated.")


def _create_table(emulator: DataverseEmulator, body: dict[str, Any]) -> Response:
    logical = str(body.get("SchemaName", "")).lower()
    if not logical or _table_by_logical(emulator, logical) is not None:
        return _error(400, "0x80044363", f"A table named {logical!r} already exists or is invalid.")
    primary_name = next(
        (str(a.get("SchemaName", "")).lower() for a in body.get("Attributes", []) if a.get("IsPrimaryName")), None
    )
    if not primary_name:
        return _error(400, "0x80044363", "A new table needs one string attribute with IsPrimaryName true.")
    emulator.add_table(pluralize(logical), logical, f"{logical}id", [primary_name, "_ownerid_value"])
    table = emulator.table(pluralize(logical))
    table.definition.update(custom=True, schema_name=str(body.get("SchemaName")), primary_name=primary_name)
    for attribute in body.get("Attributes", []):
        _declare(table, str(attribute.get("SchemaName", "")).lower(), attribute)
    # as create-update-entity-definitions-using-web-api.md shows: the new table named by its MetadataId
    return _created(emulator, f"EntityDefinitions({metadata_id(logical)})")


def _declare(table: Table, column: str, attribute: dict[str, Any]) -> None:
    """Remember a created column's type and schema name (what ``_entitydefs`` answers for it)."""
    kind = str(attribute.get("@odata.type", "")).rsplit(".", 1)[-1].removeprefix("Complex")
    table.definition.setdefault("types", {})[column] = TYPE_OF_METADATA.get(kind, "String")
    table.definition.setdefault("schema_names", {})[column] = str(attribute.get("SchemaName", column))
    options = ((attribute.get("OptionSet") or {}).get("Options")) or []
    if options:
        labels = [
            (o.get("Value"), ((o.get("Label") or {}).get("LocalizedLabels") or [{}])[0].get("Label", ""))
            for o in options
        ]
        table.definition.setdefault("options", {})[column] = labels


def _relationship(emulator: DataverseEmulator, body: dict[str, Any]) -> Response:
    referencing = _table_by_logical(emulator, str(body.get("ReferencingEntity", "")))
    referenced = _table_by_logical(emulator, str(body.get("ReferencedEntity", "")))
    lookup = str((body.get("Lookup") or {}).get("SchemaName", "")).lower()
    if referencing is None or referenced is None or not lookup:
        return _error(
            400,
            "0x80044363",
            "A relationship needs existing ReferencedEntity/ReferencingEntity and a Lookup with a SchemaName.",
        )
    if f"_{lookup}_value" in referencing.columns:
        return _error(400, "0x80044363", f"A lookup named {lookup} already exists.")
    emulator.add_column(referencing.entity_set, f"_{lookup}_value")
    return _created(emulator, f"RelationshipDefinitions(SchemaName='{body.get('SchemaName', lookup)}')")


_CREATED_PATH = re.compile(
    r"EntityDefinitions\(LogicalName='([a-z0-9_]+)'\)(?:/(Attributes|Keys)\(LogicalName='([a-z0-9_]+)'\))?$"
)


def _solution_row(emulator: DataverseEmulator, unique_name: str) -> dict[str, Any] | None:
    rows = emulator.table("solutions").rows.values()
    return next((r for r in rows if str(r.get("uniquename", "")).lower() == unique_name.lower()), None)


def _schema_name(request: Request) -> str:
    body = request.json() or {}
    if "Lookup" in body:
        return str((body.get("Lookup") or {}).get("SchemaName", ""))
    return str(body.get("SchemaName", ""))


def _check_solution(emulator: DataverseEmulator, request: Request) -> Response | None:
    """Refuse a metadata POST naming a solution that does not exist, is managed, or whose
    publisher's prefix does not start the new component's schema name (as Dataverse does)."""
    unique_name = request.headers.get("mscrm.solutionuniquename")
    if unique_name is None:
        return None  # the Default solution
    solution = _solution_row(emulator, unique_name)
    if solution is None:
        return _error(404, "0x8004a101", f"The solution {unique_name} does not exist.")
    if solution.get("ismanaged"):
        return _error(400, "0x80048033", f"The solution {unique_name} is managed: components cannot be added.")
    publisher = emulator.table("publishers").rows.get(str(solution.get("_publisherid_value", "")).lower(), {})
    prefix = str(publisher.get("customizationprefix", ""))
    if not _schema_name(request).lower().startswith(f"{prefix}_"):
        return _error(
            400,
            "0x80044364",
            f"The schema name {_schema_name(request)} must start with the prefix {prefix}_ of the publisher of "
            f"solution {unique_name}.",
        )
    return None


def _record_component(emulator: DataverseEmulator, solution: dict[str, Any], object_id: str, kind: int) -> str:
    table = emulator.table("solutioncomponents")
    for row_id, row in table.rows.items():
        if row.get("objectid") == object_id and row.get("_solutionid_value") == solution["solutionid"]:
            return row_id
    row_id = str(uuid.uuid4())
    table.put(
        row_id,
        {
            "solutioncomponentid": row_id,
            "objectid": object_id,
            "componenttype": kind,
            "_solutionid_value": solution["solutionid"],
        },
    )
    return row_id


def _in_solution(emulator: DataverseEmulator, request: Request, response: Response) -> Response:
    """After a successful create: add the new component to the header's solution."""
    unique_name = request.headers.get("mscrm.solutionuniquename")
    solution = _solution_row(emulator, unique_name) if unique_name else None
    if solution is None or response.status >= 300:
        return response
    entity_id = response.headers.get("OData-EntityId", "")
    # created definitions are named by MetadataId, as create-update-entity-definitions-using-web-api.md shows
    by_id = re.search(r"EntityDefinitions\(([0-9a-f-]{36})\)(?:/(Attributes|Keys)\(([0-9a-f-]{36})\))?$", entity_id)
    if by_id is not None:
        table_id, part, object_id = by_id.groups()
        kind = {None: "table", "Attributes": "column", "Keys": "key"}[part]
        _record_component(emulator, solution, object_id or table_id, COMPONENT_TYPES[kind])
        return response
    created = _CREATED_PATH.search(entity_id)
    if created is None:  # a relationship: its lookup column is the component the app checks
        body = request.json() or {}
        logical = str(body.get("ReferencingEntity", ""))
        name = str((body.get("Lookup") or {}).get("SchemaName", "")).lower()
        _record_component(emulator, solution, metadata_id(logical, "column", name), COMPONENT_TYPES["relationship"])
        return response
    logical, part, name = created.groups()
    if part is None:
        _record_component(emulator, solution, metadata_id(logical), COMPONENT_TYPES["table"])
    elif part == "Attributes":
        _record_component(emulator, solution, metadata_id(logical, "column", name), COMPONENT_TYPES["column"])
    else:
        _record_component(emulator, solution, metadata_id(logical, "key", name), COMPONENT_TYPES["key"])
    return response


def record_view_in_solution(emulator: DataverseEmulator, request: Request, view_id: str) -> None:
    """A savedquery created with ``MSCRM.SolutionUniqueName`` joins that solution (componenttype 26)."""
    unique_name = request.headers.get("mscrm.solutionuniquename")
    solution = _solution_row(emulator, unique_name) if unique_name else None
    if solution is not None:
        _record_component(emulator, solution, view_id, COMPONENT_TYPES["view"])


def _add_component(emulator: DataverseEmulator, body: dict[str, Any]) -> Response:
    unique_name = str(body.get("SolutionUniqueName", ""))
    solution = _solution_row(emulator, unique_name)
    if solution is None:
        return _error(404, "0x8004a101", f"The solution {unique_name} does not exist.")
    component = str(body.get("ComponentId", "")).lower()
    kind = body.get("ComponentType")
    if (
        not re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", component)
        or kind not in COMPONENT_TYPES.values()
    ):
        return _error(400, "0x80040203", "AddSolutionComponent needs a ComponentId (GUID) and a known ComponentType.")
    row_id = _record_component(emulator, solution, component, int(kind))
    return json_response(
        200,
        {
            "@odata.context": f"{emulator.url}/api/data/v9.2/$metadata"
            "#Microsoft.Dynamics.CRM.AddSolutionComponentResponse",
            "id": row_id,
        },
    )


# for the app module (``_apps.py``): rows created in a solution join it the same way
solution_row = _solution_row
record_component = _record_component
