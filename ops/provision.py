"""``python -m ops provision [--dry-run] [--solution NAME]``: add the app's columns, keys and phone
index table to an environment through the metadata Web API, inside an unmanaged solution.

Idempotent: the publisher (prefix ``enr``) and the solution are created once; what exists is
reported and left alone, except that a component missing from the solution (provisioned
before solutions, or by hand) is added to it (``AddSolutionComponent``). Every create carries
``MSCRM.SolutionUniqueName``, so the customisation can be exported, moved and removed as one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.schema import (
    CALL_SYNC,
    CALLBACKS,
    CONFIG_TABLES,
    CUSTOMER_TABLES,
    FOLLOW_UPS,
    OPTION_BASE,
    PHONE_INDEX,
    REVIEW_VIEW_NAME,
    Column,
    ConfigTable,
    SavedView,
)
from dataverse import DataverseClient, NotFound, query_path
from dataverse import filters as f

__all__ = [
    "COMPONENT_TYPES",
    "DEFAULT_SOLUTION",
    "PUBLISHER",
    "REQUIRED",
    "Item",
    "ProvisionError",
    "Publisher",
    "check",
    "find_solution",
    "provision",
    "removal_plan",
]

LANGUAGE = 1033
DEFAULT_SOLUTION = "EnreachBridge"
# solutioncomponent.componenttype per item kind (a lookup is checked through its column)
COMPONENT_TYPES = {"table": 1, "column": 2, "lookup": 2, "key": 14, "view": 26}


@dataclass(frozen=True)
class Publisher:
    unique_name: str = "enreachbridge"
    friendly_name: str = "Enreach bridge"
    prefix: str = "enr"  # every schema name in core/schema.py starts with enr_
    option_value_prefix: int = 72_700  # choice values 727000000+ (10000..99999, unique per environment)


PUBLISHER = Publisher()


class ProvisionError(Exception):
    """Provisioning cannot go on (e.g. the solution belongs to another publisher); says how to fix it."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(cause)
        self.cause, self.fix = cause, fix


# Optional, and an administrator may make it required (the attribute shapes in MicrosoftDocs/powerapps-docs).
_NOT_REQUIRED = {
    "Value": "None",
    "CanBeChanged": True,
    "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
}


def _label(text: str) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": LANGUAGE}
        ],
    }


def _string(schema_name: str, label: str, length: int, *, primary: bool = False) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "SchemaName": schema_name,
        "MaxLength": length,
        "FormatName": {"Value": "Text"},
        "DisplayName": _label(label),
        "Description": _label(f"{label} (Enreach bridge)"),
        "RequiredLevel": _NOT_REQUIRED,
        **({"IsPrimaryName": True} if primary else {}),
    }


def _integer(schema_name: str, label: str) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata",
        "SchemaName": schema_name,
        "Format": "None",
        "MinValue": 0,
        "MaxValue": 1_000_000,
        "DisplayName": _label(label),
        "Description": _label(f"{label} (Enreach bridge)"),
        "RequiredLevel": _NOT_REQUIRED,
    }


@dataclass(frozen=True)
class Item:
    """One thing the app needs in Dataverse, how to see it exists, and how to create it."""

    kind: str  # "table", "column", "lookup", "key", "view" (a savedquery: a row, not metadata)
    entity: str  # logical name of the table it belongs to
    name: str
    check_path: str
    create_path: str
    body: dict[str, Any]

    def describe(self) -> str:
        return f"{self.kind} {self.entity}.{self.name}" if self.kind != "table" else f"table {self.name}"


def _column(entity: str, name: str, label: str, length: int) -> Item:
    return Item(
        "column",
        entity,
        name,
        f"EntityDefinitions(LogicalName='{entity}')/Attributes(LogicalName='{name}')",
        f"EntityDefinitions(LogicalName='{entity}')/Attributes",
        _string(name, label, length),
    )


def _whole_number_column(entity: str, name: str, label: str) -> Item:
    return Item(
        "column",
        entity,
        name,
        f"EntityDefinitions(LogicalName='{entity}')/Attributes(LogicalName='{name}')",
        f"EntityDefinitions(LogicalName='{entity}')/Attributes",
        _integer(name, label),
    )


def _key(entity: str, name: str, columns: list[str], label: str) -> Item:
    return Item(
        "key",
        entity,
        name,
        f"EntityDefinitions(LogicalName='{entity}')/Keys(LogicalName='{name}')",
        f"EntityDefinitions(LogicalName='{entity}')/Keys",
        {"SchemaName": name, "DisplayName": _label(label), "KeyAttributes": columns},
    )


def _lookup(target: str, lookup: str, *, entity: str = PHONE_INDEX.logical_name, label: str = "") -> Item:
    """A lookup column on ``entity`` pointing at ``target`` (created with its one-to-many relationship)."""
    return Item(
        "lookup",
        entity,
        lookup,
        f"EntityDefinitions(LogicalName='{entity}')/Attributes(LogicalName='{lookup}')",
        "RelationshipDefinitions",
        {
            "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
            "SchemaName": f"{lookup}_{entity}",
            "ReferencedEntity": target,
            "ReferencingEntity": entity,
            "CascadeConfiguration": {
                "Assign": "NoCascade",
                "Delete": "Cascade" if entity == PHONE_INDEX.logical_name else "RemoveLink",
                "Merge": "NoCascade",
                "Reparent": "NoCascade",
                "Share": "NoCascade",
                "Unshare": "NoCascade",
            },
            "Lookup": {
                "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
                "AttributeType": "Lookup",
                "SchemaName": lookup,
                "DisplayName": _label(label or target.capitalize()),
                "RequiredLevel": {"Value": "None", "CanBeChanged": True},
            },
        },
    )


def _view(view: SavedView) -> Item:
    """A public system view (savedquery, querytype 0) on ``view.table``; found by name and table."""
    cells = "".join(f'<cell name="{c}" width="150" />' for c in view.columns)
    attributes = "".join(f'<attribute name="{c}" />' for c in view.columns)
    primary = "activityid" if view.table in ("phonecall", "task") else f"{view.table}id"
    return Item(
        "view",
        view.table,
        view.name,
        query_path(
            "savedqueries",
            select=["savedqueryid"],
            filter=f.and_(f.eq("name", view.name), f.eq("returnedtypecode", view.table)),
        ),
        "savedqueries",
        {
            "name": view.name,
            "returnedtypecode": view.table,
            "querytype": 0,
            "description": f"{view.name} (Enreach bridge)",
            "fetchxml": (
                f'<fetch version="1.0" mapping="logical"><entity name="{view.table}">{attributes}'
                f'<attribute name="{primary}" /><order attribute="actualstart" descending="true" />'
                f"{view.filter_xml}</entity></fetch>"
            ),
            "layoutxml": (
                f'<grid name="resultset" object="{4210 if view.table == "phonecall" else 0}" jump="subject" '
                f'select="1" icon="1" preview="1"><row name="result" id="{primary}">{cells}</row></grid>'
            ),
        },
    )


def _typed(column: Column) -> dict[str, Any]:
    """The attribute definition of a configuration column (shapes from MicrosoftDocs/powerapps-docs
    developer/data-platform/webapi/create-update-column-definitions-using-web-api.md)."""
    common = {
        "SchemaName": column.name,
        "DisplayName": _label(column.label),
        "Description": _label(f"{column.label} (Enreach bridge)"),
        "RequiredLevel": _NOT_REQUIRED,
    }
    if column.kind == "string":
        return _string(column.name, column.label, column.length)
    if column.kind == "memo":
        return {
            "@odata.type": "Microsoft.Dynamics.CRM.MemoAttributeMetadata",
            "Format": "TextArea",
            "MaxLength": column.length,
            **common,
        }
    if column.kind == "integer":
        return {
            "@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata",
            "Format": "None",
            "MinValue": -2_147_483_648,
            "MaxValue": 2_147_483_647,
            **common,
        }
    if column.kind == "boolean":
        return {
            "@odata.type": "Microsoft.Dynamics.CRM.BooleanAttributeMetadata",
            "DefaultValue": False,
            "OptionSet": {
                "@odata.type": "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata",
                "TrueOption": {"Value": 1, "Label": _label("Yes")},
                "FalseOption": {"Value": 0, "Label": _label("No")},
                "OptionSetType": "Boolean",
            },
            **common,
        }
    if column.kind == "choice":
        return {
            "@odata.type": "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
            "OptionSet": {
                "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
                "IsGlobal": False,
                "OptionSetType": "Picklist",
                "Options": [{"Value": OPTION_BASE + i, "Label": _label(o)} for i, o in enumerate(column.options)],
            },
            **common,
        }
    if column.kind == "datetime":
        return {
            "@odata.type": "Microsoft.Dynamics.CRM.DateTimeAttributeMetadata",
            "Format": "DateAndTime",
            "DateTimeBehavior": {"Value": "UserLocal"},
            **common,
        }
    raise ValueError(f"unknown column kind {column.kind!r}")


def _config_items(table: ConfigTable) -> list[Item]:
    """A configuration table, its columns and lookups, and the alternate key on its name."""
    items = [
        Item(
            "table",
            table.logical_name,
            table.logical_name,
            f"EntityDefinitions(LogicalName='{table.logical_name}')",
            "EntityDefinitions",
            {
                "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
                "SchemaName": table.logical_name,
                "DisplayName": _label(table.label),
                "DisplayCollectionName": _label(table.plural),
                "Description": _label(table.description),
                "OwnershipType": "OrganizationOwned",
                "IsActivity": False,
                "HasActivities": False,
                "HasNotes": False,
                "Attributes": [_string(table.name_column, table.name_label, 100, primary=True)],
            },
        )
    ]
    for column in table.columns:
        if column.kind == "lookup":
            items.append(_lookup(column.target, column.name, entity=table.logical_name, label=column.label))
            continue
        items.append(
            Item(
                "column",
                table.logical_name,
                column.name,
                f"EntityDefinitions(LogicalName='{table.logical_name}')/Attributes(LogicalName='{column.name}')",
                f"EntityDefinitions(LogicalName='{table.logical_name}')/Attributes",
                _typed(column),
            )
        )
    items.append(_key(table.logical_name, table.key_name, [table.name_column], table.name_label))
    return items


REQUIRED: tuple[Item, ...] = (
    _column("systemuser", CALL_SYNC.user_id_column, "Enreach user id", 100),
    _column("systemuser", CALL_SYNC.user_email_column, "Enreach user e-mail", 320),
    _column("phonecall", CALL_SYNC.call_id_column, "Enreach call id", 200),
    _key("phonecall", CALL_SYNC.call_key_name, [CALL_SYNC.call_id_column], "Enreach call id"),
    _column("phonecall", CALL_SYNC.review_column, "Enreach call review", CALL_SYNC.review_length),
    # callback requests (callbacks/): one phonecall per request, by its id
    _column("phonecall", CALLBACKS.request_id_column, "Enreach callback request id", 200),
    _key("phonecall", CALLBACKS.request_key_name, [CALLBACKS.request_id_column], "Enreach callback request id"),
    _column("phonecall", CALLBACKS.list_column, "Enreach callback list", CALLBACKS.list_length),
    _whole_number_column("phonecall", CALLBACKS.attempts_column, "Enreach callback attempts"),
    _column("phonecall", CALLBACKS.state_column, "Enreach callback state", 20),
    Item(
        "table",
        PHONE_INDEX.logical_name,
        PHONE_INDEX.logical_name,
        f"EntityDefinitions(LogicalName='{PHONE_INDEX.logical_name}')",
        "EntityDefinitions",
        {
            "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
            "SchemaName": PHONE_INDEX.logical_name,
            "DisplayName": _label("Phone index"),
            "DisplayCollectionName": _label("Phone index"),
            "Description": _label("Customers' phone numbers in E.164, kept by the Enreach bridge"),
            "OwnershipType": "OrganizationOwned",
            "IsActivity": False,
            "HasActivities": False,
            "HasNotes": False,
            "Attributes": [_string(PHONE_INDEX.key_column, "Key", 250, primary=True)],
        },
    ),
    _column(PHONE_INDEX.logical_name, PHONE_INDEX.number_column, "E.164 number", 32),
    _column(PHONE_INDEX.logical_name, PHONE_INDEX.source_column, "Source column", 100),
    *(_lookup(t.logical_name, t.index_lookup) for t in CUSTOMER_TABLES),
    _key(PHONE_INDEX.logical_name, PHONE_INDEX.key_name, [PHONE_INDEX.key_column], "Record and column"),
    # missed calls, follow-ups and unknown callers (issue 23)
    _column("phonecall", FOLLOW_UPS.result_column, "Enreach call result", 20),
    _column("phonecall", FOLLOW_UPS.unknown_column, "Unknown caller number", 32),
    _column("task", FOLLOW_UPS.follow_up_key_column, "Open follow-up of number", 32),
    _key("task", FOLLOW_UPS.follow_up_key_name, [FOLLOW_UPS.follow_up_key_column], "Open follow-up of number"),
    _column("lead", FOLLOW_UPS.lead_number_column, "Lead created for number", 32),
    _key("lead", FOLLOW_UPS.lead_key_name, [FOLLOW_UPS.lead_number_column], "Lead created for number"),
    *(_view(view) for view in FOLLOW_UPS.views),
    *(item for table in CONFIG_TABLES for item in _config_items(table)),
)


def metadata(client: DataverseClient, item: Item) -> dict[str, Any] | None:
    """The item's metadata (``MetadataId``, a key's ``EntityKeyIndexStatus``), None when absent.
    A view is a savedquery row: its id stands for the MetadataId."""
    if item.kind == "view":
        rows = client.get_page(item.check_path).records
        return {"MetadataId": rows[0]["savedqueryid"]} if rows else None
    try:
        result: dict[str, Any] = client.request("GET", item.check_path).json()
    except NotFound:
        return None
    return result


def exists(client: DataverseClient, item: Item) -> bool:
    return metadata(client, item) is not None


def check(client: DataverseClient) -> list[tuple[Item, bool]]:
    """Every required item with whether it exists."""
    return [(item, exists(client, item)) for item in REQUIRED]


def _one(client: DataverseClient, entity_set: str, select: list[str], unique_name: str) -> dict[str, Any] | None:
    page = client.query_page(entity_set, select=select, filter=f.eq("uniquename", unique_name), top=1)
    return page.records[0] if page.records else None


def find_solution(client: DataverseClient, name: str) -> dict[str, Any] | None:
    return _one(client, "solutions", ["solutionid", "uniquename", "ismanaged", "_publisherid_value"], name)


def _ensure_publisher(client: DataverseClient, *, dry_run: bool, report: Callable[[str], None]) -> str | None:
    found = _one(client, "publishers", ["publisherid", "customizationprefix"], PUBLISHER.unique_name)
    if found is not None:
        if found.get("customizationprefix") != PUBLISHER.prefix:
            raise ProvisionError(
                f"publisher {PUBLISHER.unique_name} exists with prefix {found.get('customizationprefix')!r}, "
                f"not {PUBLISHER.prefix!r}",
                "rename that publisher's unique name in make.powerapps.com (Solutions > Publishers), then run again",
            )
        report(f"exists   publisher {PUBLISHER.unique_name} (prefix {PUBLISHER.prefix})")
        return str(found["publisherid"])
    if dry_run:
        report(f"would create publisher {PUBLISHER.unique_name} (prefix {PUBLISHER.prefix})")
        return None
    publisher_id = client.create(
        "publishers",
        {
            "uniquename": PUBLISHER.unique_name,
            "friendlyname": PUBLISHER.friendly_name,
            "customizationprefix": PUBLISHER.prefix,
            "customizationoptionvalueprefix": PUBLISHER.option_value_prefix,
            "description": "Publisher of the Enreach bridge's tables and columns",
        },
    )
    report(f"created  publisher {PUBLISHER.unique_name} (prefix {PUBLISHER.prefix})")
    return publisher_id


def _ensure_solution(client: DataverseClient, name: str, *, dry_run: bool, report: Callable[[str], None]) -> str | None:
    publisher_id = _ensure_publisher(client, dry_run=dry_run, report=report)
    found = find_solution(client, name)
    if found is not None:
        if found.get("ismanaged"):
            raise ProvisionError(
                f"solution {name} is managed: components cannot be added to it",
                "pass --solution with the name of an unmanaged solution (or leave it out for the default)",
            )
        if publisher_id and str(found.get("_publisherid_value", "")).lower() != publisher_id.lower():
            raise ProvisionError(
                f"solution {name} belongs to another publisher, whose prefix is not {PUBLISHER.prefix}",
                f"pass --solution with another name; the app's components are named {PUBLISHER.prefix}_...",
            )
        report(f"exists   solution {name} (unmanaged)")
        return str(found["solutionid"])
    if dry_run:
        report(f"would create solution {name} (unmanaged)")
        return None
    solution_id = client.create(
        "solutions",
        {
            "uniquename": name,
            "friendlyname": "Enreach bridge" if name == DEFAULT_SOLUTION else name,
            "version": "1.0.0.0",
            "description": "Tables, columns and keys of the Enreach bridge (python -m ops provision)",
            "publisherid@odata.bind": f"/publishers({publisher_id})",
        },
    )
    report(f"created  solution {name} (unmanaged)")
    return solution_id


def solution_components(client: DataverseClient, solution_id: str) -> set[str]:
    """The object ids (MetadataIds) of the components in a solution, in one query."""
    rows = client.query(
        "solutioncomponents", select=["objectid"], filter=f.eq("_solutionid_value", uuid.UUID(solution_id))
    )
    return {str(row["objectid"]).lower() for row in rows}


def provision(
    client: DataverseClient,
    *,
    dry_run: bool = False,
    solution: str = DEFAULT_SOLUTION,
    report: Callable[[str], None] = print,
) -> tuple[list[Item], list[Item]]:
    """Create the publisher and solution, then what is missing, in order (a table before its columns
    and keys), each inside the solution. (created, existing)."""
    solution_id = _ensure_solution(client, solution, dry_run=dry_run, report=report)
    members = solution_components(client, solution_id) if solution_id else set()
    created: list[Item] = []
    existing: list[Item] = []
    for item in REQUIRED:
        found = metadata(client, item)
        if found is not None:
            existing.append(item)
            component = str(found.get("MetadataId", "")).lower()
            if component and component not in members:
                if dry_run:
                    report(f"exists   {item.describe()}; would add it to solution {solution}")
                    continue
                client.request(
                    "POST",
                    "AddSolutionComponent",
                    json={
                        "ComponentId": component,
                        "ComponentType": COMPONENT_TYPES[item.kind],
                        "SolutionUniqueName": solution,
                        "AddRequiredComponents": False,
                        "DoNotIncludeSubcomponents": False,
                    },
                    idempotent=True,
                )
                report(f"exists   {item.describe()}; added to solution {solution}")
                continue
            report(f"exists   {item.describe()}")
            continue
        if dry_run:
            report(f"would create {item.describe()}")
        else:
            client.request(
                "POST",
                item.create_path,
                json=item.body,
                headers={"MSCRM.SolutionUniqueName": solution},
                idempotent=False,
            )
            report(f"created  {item.describe()}")
        created.append(item)
    from .app import ensure_app

    ensure_app(client, solution=solution, dry_run=dry_run, report=report, members=members if solution_id else None)
    return created, existing


def removal_plan(client: DataverseClient, *, solution: str = DEFAULT_SOLUTION) -> list[str]:
    """What removing the app's customisation would delete, in the order it must go (keys and columns
    before their table, the solution and publisher last). Rows in these tables and columns go too."""
    from .app import APP, find_parts

    parts = find_parts(client)
    plan = [
        label
        for label, found in (
            (f"app '{APP.name}'", parts.app_id),
            (f"site map {APP.sitemap_unique_name}", parts.sitemap_id),
            (f"view phonecall '{REVIEW_VIEW_NAME}'", parts.view_id),
        )
        if found
    ]
    plan += [item.describe() for item in reversed(REQUIRED) if exists(client, item)]
    found = find_solution(client, solution)
    if found is not None:
        plan.append(f"solution {solution}")
        others = client.query_page(
            "solutions",
            select=["solutionid"],
            filter=f.eq("_publisherid_value", uuid.UUID(str(found["_publisherid_value"]))),
            top=2,
        )
        if len(others.records) == 1:
            plan.append(f"publisher {PUBLISHER.unique_name} (no other solution uses it)")
    return plan
