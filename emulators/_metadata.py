"""The metadata Web API subset provisioning and the doctor use, for the Dataverse emulator.

GET/POST ``EntityDefinitions``, ``EntityDefinitions(LogicalName='x')/Attributes`` and ``/Keys``,
POST ``RelationshipDefinitions`` (one-to-many, creating the lookup), and the
``RetrieveUserPrivilegeByPrivilegeName`` function on ``systemusers(<id>)``.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from ._server import Request, Response, json_response

if TYPE_CHECKING:
    from .dataverse import DataverseEmulator, Table

__all__ = ["handle_metadata", "pluralize"]

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
    if resource == "RelationshipDefinitions" and request.method == "POST":
        return _relationship(emulator, request.json() or {})
    if resource == "EntityDefinitions" and request.method == "POST":
        return _create_table(emulator, request.json() or {})
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
                "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, logical)),
            },
        )
    if part == "Attributes" and name and request.method == "GET":
        if name != table.primary_key and name not in table.columns and f"_{name}_value" not in table.columns:
            return _error(404, "0x80040217", f"Could not find an attribute with name {name} on {logical}.")
        return json_response(200, {"LogicalName": name, "EntityLogicalName": logical})
    if part == "Keys" and name and request.method == "GET":
        if name not in table.alternate_keys:
            return _error(404, "0x80040217", f"Could not find a key with name {name} on {logical}.")
        return json_response(
            200,
            {"LogicalName": name, "KeyAttributes": list(table.alternate_keys[name]), "EntityKeyIndexStatus": "Active"},
        )
    if part == "Attributes" and not name and request.method == "POST":
        body = request.json() or {}
        column = str(body.get("SchemaName", "")).lower()
        if not column or column in table.columns:
            return _error(400, "0x80044363", f"An attribute named {column!r} already exists or is invalid.")
        emulator.add_column(table.entity_set, column)
        return _created(emulator, f"EntityDefinitions(LogicalName='{logical}')/Attributes(LogicalName='{column}')")
    if part == "Keys" and not name and request.method == "POST":
        body = request.json() or {}
        key = str(body.get("SchemaName", "")).lower()
        columns = [str(c).lower() for c in body.get("KeyAttributes", [])]
        missing = [c for c in columns if c not in table.columns]
        if not key or not columns or missing:
            return _error(400, "0x80048cf8", f"A key needs existing columns (missing: {missing}).")
        emulator.add_alternate_key(table.entity_set, key, columns)
        return _created(emulator, f"EntityDefinitions(LogicalName='{logical}')/Keys(LogicalName='{key}')")
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
    return _created(emulator, f"EntityDefinitions(LogicalName='{logical}')")


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
