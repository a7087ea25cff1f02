"""Table, column and key definitions as the metadata Web API answers them, for the Dataverse emulator.

What MicrosoftDocs/powerapps-docs ``developer/data-platform/webapi/query-metadata-web-api.md``
describes, for the tables the emulator holds:

* ``GET EntityDefinitions?$select=…&$filter=…`` (any primitive property; no paging, and the
  ``MetadataId`` is always returned), ``EntityDefinitions(LogicalName='x')`` and
  ``EntityDefinitions(<MetadataId>)`` with ``$select``;
* ``…/Attributes`` with ``$select``/``$filter``, one attribute by ``LogicalName`` or MetadataId,
  and the type casts (``…/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata``, with
  ``$expand=OptionSet``);
* ``…/Keys`` (the alternate keys) and one key by ``LogicalName`` or MetadataId;
* ``DELETE`` of a custom table or column by MetadataId.

``canonical()`` rewrites a path that names a table by MetadataId to the ``LogicalName='x'`` form,
so the writes in ``_metadata.py`` serve both. Column types are inferred from the names the
emulator's schema uses unless the column was created through the metadata API with a type.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ._server import Request, Response, json_response
from .odata import FilterSyntaxError, UnknownColumn, compile_filter

if TYPE_CHECKING:
    from .dataverse import DataverseEmulator, Table

__all__ = [
    "ATTRIBUTE_TYPES",
    "TYPE_OF_METADATA",
    "attribute_type",
    "canonical",
    "entity_definition",
    "handle_definitions",
]

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_BY_ID = re.compile(rf"^EntityDefinitions\(({_GUID})\)")
_PATH = re.compile(
    r"^EntityDefinitions\(LogicalName='([a-z0-9_]+)'\)"
    rf"(?:/(Attributes|Keys)(?:\((?:LogicalName='([a-z0-9_]+)'|({_GUID}))\))?)?"
    r"(?:/Microsoft\.Dynamics\.CRM\.([A-Za-z]+AttributeMetadata))?$"
)

# AttributeType (AttributeTypeCode) -> the AttributeMetadata type a cast names
ATTRIBUTE_TYPES = {
    "BigInt": "BigIntAttributeMetadata",
    "Boolean": "BooleanAttributeMetadata",
    "Customer": "LookupAttributeMetadata",
    "DateTime": "DateTimeAttributeMetadata",
    "Decimal": "DecimalAttributeMetadata",
    "Double": "DoubleAttributeMetadata",
    "Integer": "IntegerAttributeMetadata",
    "Lookup": "LookupAttributeMetadata",
    "Memo": "MemoAttributeMetadata",
    "Money": "MoneyAttributeMetadata",
    "Owner": "LookupAttributeMetadata",
    "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
    "String": "StringAttributeMetadata",
    "Uniqueidentifier": "UniqueIdentifierAttributeMetadata",
}
TYPE_OF_METADATA = {
    "StringAttributeMetadata": "String",
    "MemoAttributeMetadata": "Memo",
    "IntegerAttributeMetadata": "Integer",
    "BigIntAttributeMetadata": "BigInt",
    "DecimalAttributeMetadata": "Decimal",
    "DoubleAttributeMetadata": "Double",
    "MoneyAttributeMetadata": "Money",
    "BooleanAttributeMetadata": "Boolean",
    "DateTimeAttributeMetadata": "DateTime",
    "PicklistAttributeMetadata": "Picklist",
    "LookupAttributeMetadata": "Lookup",
    "FileAttributeMetadata": "File",
}

# Primary name columns of the built-in tables (the table reference pages' PrimaryNameAttribute)
PRIMARY_NAMES = {
    "contact": "fullname",
    "account": "name",
    "lead": "fullname",
    "systemuser": "fullname",
    "team": "name",
    "incident": "title",
    "phonecall": "subject",
    "activityparty": "partyidname",
    "msdyn_presence": "msdyn_name",
    "msdyn_agentstatus": "msdyn_name",
    "publisher": "friendlyname",
    "solution": "friendlyname",
    "solutioncomponent": "",
}
_SCHEMA_NAMES = {"phonecall": "PhoneCall", "systemuser": "SystemUser", "activityparty": "ActivityParty"}
# Options of built-in choice columns (contact.md / account.md), so label lookups have something to read.
_OPTIONS = {
    "preferredcontactmethodcode": [(1, "Any"), (2, "Email"), (3, "Phone"), (4, "Fax"), (5, "Mail")],
    "customertypecode": [(1, "Competitor"), (2, "Consultant"), (3, "Customer"), (4, "Investor")],
}
_BOOLEANS = {"directioncode", "isdisabled", "msdyn_canuserset", "msdyn_isagentloggedin", "ismanaged"}
_INTEGERS = {"actualdurationminutes", "participationtypemask", "componenttype", "msdyn_basepresencestatus"}


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})


def _metadata_id(logical: str, kind: str = "", name: str = "") -> str:
    from ._metadata import metadata_id

    return metadata_id(logical, kind, name)


def canonical(emulator: DataverseEmulator, resource: str) -> str:
    """``EntityDefinitions(<MetadataId>)…`` as ``EntityDefinitions(LogicalName='x')…`` (unchanged if unknown)."""
    match = _BY_ID.match(resource)
    if not match:
        return resource
    wanted = match.group(1).lower()
    for table in emulator.tables.values():
        if _metadata_id(table.logical_name) == wanted:
            return f"EntityDefinitions(LogicalName='{table.logical_name}')" + resource[match.end() :]
    return resource


def attribute_type(table: Table, column: str) -> str:
    """The AttributeType of ``column`` (a logical name; lookups without ``_…_value``)."""
    declared = table.definition.get("types", {}).get(column)
    if declared:
        return str(declared)
    if column == table.primary_key:
        return "Uniqueidentifier"
    if column == "ownerid":
        return "Owner"
    if f"_{column}_value" in table.columns:
        return "Customer" if column in ("customerid", "parentcustomerid") else "Lookup"
    if column == "statecode":
        return "State"
    if column == "statuscode":
        return "Status"
    if column == "versionnumber":
        return "BigInt"
    if column in _BOOLEANS:
        return "Boolean"
    if column in _INTEGERS:
        return "Integer"
    if column.endswith("on") and column in ("createdon", "modifiedon", "msdyn_presencemodifiedon"):
        return "DateTime"
    if column.startswith(("actual", "scheduled")) and column not in ("actualdurationminutes",):
        return "DateTime"
    if column.endswith("code") or column == "accessmode":
        return "Picklist"
    if column == "description":
        return "Memo"
    return "String"


def _columns(table: Table) -> list[str]:
    names = {table.primary_key}
    for column in table.columns:
        names.add(column[1:-6] if column.startswith("_") and column.endswith("_value") else column)
    return sorted(names)


def _label(text: str) -> dict[str, Any]:
    label = {"Label": text, "LanguageCode": 1033}
    return {"LocalizedLabels": [label], "UserLocalizedLabel": label}


def _attribute(table: Table, column: str) -> dict[str, Any]:
    kind = attribute_type(table, column)
    primary_name = table.definition.get("primary_name") or PRIMARY_NAMES.get(table.logical_name, "")
    return {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{ATTRIBUTE_TYPES.get(kind, 'AttributeMetadata')}",
        "MetadataId": _metadata_id(table.logical_name, "column", column),
        "LogicalName": column,
        "SchemaName": table.definition.get("schema_names", {}).get(column, column),
        "EntityLogicalName": table.logical_name,
        "AttributeType": kind,
        "IsPrimaryId": column == table.primary_key,
        "IsPrimaryName": column == primary_name,
        "IsCustomAttribute": column in table.definition.get("types", {}),
    }


def _option_set(table: Table, column: str) -> dict[str, Any]:
    options = table.definition.get("options", {}).get(column) or _OPTIONS.get(column, [])
    return {
        "MetadataId": _metadata_id(table.logical_name, "optionset", column),
        "Name": f"{table.logical_name}_{column}",
        "OptionSetType": "Picklist",
        "IsGlobal": False,
        "Options": [{"Value": value, "Label": _label(text)} for value, text in options],
    }


def _key(emulator: DataverseEmulator, table: Table, name: str) -> dict[str, Any]:
    return {
        "MetadataId": _metadata_id(table.logical_name, "key", name),
        "LogicalName": name,
        "SchemaName": name,
        "EntityLogicalName": table.logical_name,
        "KeyAttributes": list(table.alternate_keys[name]),
        "EntityKeyIndexStatus": emulator.key_status.get(name, "Active"),
    }


def entity_definition(table: Table) -> dict[str, Any]:
    """The EntityMetadata properties the emulator knows for ``table``."""
    logical = table.logical_name
    custom = bool(table.definition.get("custom"))
    schema = table.definition.get("schema_name") or _SCHEMA_NAMES.get(logical) or logical.capitalize()
    return {
        "MetadataId": _metadata_id(logical),
        "LogicalName": logical,
        "SchemaName": schema,
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "PrimaryIdAttribute": table.primary_key,
        "PrimaryNameAttribute": table.definition.get("primary_name") or PRIMARY_NAMES.get(logical) or None,
        "IsCustomEntity": custom,
        "IsPrivate": False,
        "IsActivity": logical == "phonecall",
        "TableType": "Standard",
        "OwnershipType": "UserOwned" if "_ownerid_value" in table.columns else "OrganizationOwned",
        "DisplayName": _label(table.definition.get("display_name") or schema),
    }


def _project(document: dict[str, Any], select: str | None) -> dict[str, Any]:
    """``$select`` on a metadata entity: the named properties, plus ``MetadataId`` (always returned)."""
    if not select:
        return dict(document)
    names = [n.strip() for n in select.split(",") if n.strip()]
    out = {k: v for k, v in document.items() if k.startswith("@odata.")}
    for name in names:
        if name not in document:
            raise _BadQuery(f"Could not find a property named '{name}' on type '{_type_of(document)}'.")
        out[name] = document[name]
    out["MetadataId"] = document["MetadataId"]
    if "OptionSet" in document:  # an expanded navigation property is kept beside $select
        out["OptionSet"] = document["OptionSet"]
    return out


def _type_of(document: dict[str, Any]) -> str:
    return str(document.get("@odata.type", "#Microsoft.Dynamics.CRM.EntityMetadata")).lstrip("#")


class _BadQuery(Exception):
    pass


def _filtered(documents: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    if not text:
        return documents
    known = set().union(*(d.keys() for d in documents)) if documents else set()
    try:
        predicate = compile_filter(text, lambda name: name in known or not documents)
    except UnknownColumn as error:
        raise _BadQuery(f"Could not find a property named '{error.name}'.") from None
    except FilterSyntaxError as error:
        raise _BadQuery(str(error)) from None
    return [d for d in documents if predicate(d)]


def _collection(emulator: DataverseEmulator, context: str, items: list[dict[str, Any]], request: Request) -> Response:
    select = request.query.get("$select")
    values = [_project(d, select) for d in _filtered(items, request.query.get("$filter"))]
    return json_response(
        200,
        {"@odata.context": f"{emulator.url}/api/data/v9.2/$metadata#{context}", "value": values},
        {"OData-Version": "4.0"},
    )


def _single(emulator: DataverseEmulator, context: str, document: dict[str, Any], request: Request) -> Response:
    body = {"@odata.context": f"{emulator.url}/api/data/v9.2/$metadata#{context}/$entity"}
    body.update(_project(document, request.query.get("$select")))
    return json_response(200, body, {"OData-Version": "4.0"})


def _with_option_sets(table: Table, attribute: dict[str, Any], expand: str) -> dict[str, Any]:
    if "OptionSet" in expand and attribute["AttributeType"] == "Picklist":
        attribute = {**attribute, "OptionSet": _option_set(table, attribute["LogicalName"])}
        inner = re.search(r"OptionSet\(\$select=([^)]*)\)", expand)
        if inner:
            wanted = {n.strip() for n in inner.group(1).split(",")}
            attribute["OptionSet"] = {k: v for k, v in attribute["OptionSet"].items() if k in wanted | {"MetadataId"}}
    return attribute


def handle_definitions(emulator: DataverseEmulator, request: Request, resource: str) -> Response | None:
    """Answer the metadata reads (and DELETEs) described above; None for anything else."""
    try:
        return _handle(emulator, request, resource)
    except _BadQuery as error:
        return _error(400, "0x80060888", str(error))


def _handle(emulator: DataverseEmulator, request: Request, resource: str) -> Response | None:
    if resource == "EntityDefinitions" and request.method == "GET":
        tables = [entity_definition(t) for t in emulator.tables.values()]
        return _collection(emulator, "EntityDefinitions", tables, request)
    match = _PATH.match(resource)
    if not match or request.method not in ("GET", "DELETE"):
        return None
    logical, part, name, by_id, cast = match.groups()
    table = next((t for t in emulator.tables.values() if t.logical_name == logical), None)
    if table is None:
        return _error(404, "0x80040217", f"Could not find an entity with name {logical}.")
    if part is None:
        if request.method == "DELETE":
            return _delete_table(emulator, table)
        return _single(emulator, "EntityDefinitions", entity_definition(table), request)
    if part == "Keys":
        if request.method != "GET":
            return None
        keys = [_key(emulator, table, k) for k in table.alternate_keys]
        if name is None and by_id is None:
            return _collection(emulator, f"EntityDefinitions('{logical}')/Keys", keys, request)
        found = next((k for k in keys if k["LogicalName"] == name or k["MetadataId"] == (by_id or "").lower()), None)
        if found is None:
            return _error(404, "0x80040217", f"Could not find a key with name {name or by_id} on {logical}.")
        return _single(emulator, f"EntityDefinitions('{logical}')/Keys", found, request)
    attributes = [_attribute(table, c) for c in _columns(table)]
    if cast is not None:
        kind = TYPE_OF_METADATA.get(cast)
        if kind is None:
            return _error(400, "0x80060888", f"The type 'Microsoft.Dynamics.CRM.{cast}' is not an attribute type.")
        attributes = [a for a in attributes if ATTRIBUTE_TYPES.get(a["AttributeType"]) == cast]
    expand = request.query.get("$expand", "")
    context = f"EntityDefinitions('{logical}')/Attributes" + (f"/Microsoft.Dynamics.CRM.{cast}" if cast else "")
    if name is None and by_id is None:
        if request.method != "GET":
            return None
        attributes = [_with_option_sets(table, a, expand) for a in attributes]
        return _collection(emulator, context, attributes, request)
    found = next((a for a in attributes if a["LogicalName"] == name or a["MetadataId"] == (by_id or "").lower()), None)
    if found is None:
        return _error(404, "0x80040217", f"Could not find an attribute with name {name or by_id} on {logical}.")
    if request.method == "DELETE":
        return _delete_column(emulator, table, str(found["LogicalName"]))
    return _single(emulator, context, _with_option_sets(table, found, expand), request)


def _delete_table(emulator: DataverseEmulator, table: Table) -> Response:
    if not table.definition.get("custom"):
        return _error(403, "0x80048405", f"The table {table.logical_name} is not a custom table: it cannot be deleted.")
    with emulator.lock:
        emulator.tables.pop(table.entity_set, None)
    return Response(204, headers={"OData-Version": "4.0"})


def _delete_column(emulator: DataverseEmulator, table: Table, column: str) -> Response:
    if column not in table.definition.get("types", {}):
        return _error(403, "0x80048405", f"The column {column} is not a custom column: it cannot be deleted.")
    if any(column in cols for cols in table.alternate_keys.values()):
        return _error(400, "0x80048cf8", f"The column {column} is part of an alternate key: delete the key first.")
    with emulator.lock:
        table.columns.discard(column)
        table.definition["types"].pop(column, None)
    return Response(204, headers={"OData-Version": "4.0"})
