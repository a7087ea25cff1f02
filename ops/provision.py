"""``python -m ops provision [--dry-run]``: add the app's columns, keys and phone index table to an
environment through the metadata Web API. Idempotent: what exists is reported and left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.schema import CALL_SYNC, CUSTOMER_TABLES, PHONE_INDEX
from dataverse import DataverseClient, NotFound

__all__ = ["REQUIRED", "Item", "check", "provision"]

LANGUAGE = 1033


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
        "RequiredLevel": {
            "Value": "None",
            "CanBeChanged": True,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        **({"IsPrimaryName": True} if primary else {}),
    }


@dataclass(frozen=True)
class Item:
    """One thing the app needs in Dataverse, how to see it exists, and how to create it."""

    kind: str  # "table", "column", "lookup", "key"
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


def _key(entity: str, name: str, columns: list[str], label: str) -> Item:
    return Item(
        "key",
        entity,
        name,
        f"EntityDefinitions(LogicalName='{entity}')/Keys(LogicalName='{name}')",
        f"EntityDefinitions(LogicalName='{entity}')/Keys",
        {"SchemaName": name, "DisplayName": _label(label), "KeyAttributes": columns},
    )


def _lookup(target: str, lookup: str) -> Item:
    return Item(
        "lookup",
        PHONE_INDEX.logical_name,
        lookup,
        f"EntityDefinitions(LogicalName='{PHONE_INDEX.logical_name}')/Attributes(LogicalName='{lookup}')",
        "RelationshipDefinitions",
        {
            "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
            "SchemaName": f"{lookup}_{PHONE_INDEX.logical_name}",
            "ReferencedEntity": target,
            "ReferencingEntity": PHONE_INDEX.logical_name,
            "CascadeConfiguration": {
                "Assign": "NoCascade",
                "Delete": "Cascade",
                "Merge": "NoCascade",
                "Reparent": "NoCascade",
                "Share": "NoCascade",
                "Unshare": "NoCascade",
            },
            "Lookup": {
                "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
                "AttributeType": "Lookup",
                "SchemaName": lookup,
                "DisplayName": _label(target.capitalize()),
                "RequiredLevel": {"Value": "None", "CanBeChanged": True},
            },
        },
    )


REQUIRED: tuple[Item, ...] = (
    _column("systemuser", CALL_SYNC.user_id_column, "Enreach user id", 100),
    _column("systemuser", CALL_SYNC.user_email_column, "Enreach user e-mail", 320),
    _column("phonecall", CALL_SYNC.call_id_column, "Enreach call id", 200),
    _key("phonecall", CALL_SYNC.call_key_name, [CALL_SYNC.call_id_column], "Enreach call id"),
    _column("phonecall", CALL_SYNC.review_column, "Enreach call review", CALL_SYNC.review_length),
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
)


def exists(client: DataverseClient, item: Item) -> bool:
    try:
        client.request("GET", item.check_path)
    except NotFound:
        return False
    return True


def check(client: DataverseClient) -> list[tuple[Item, bool]]:
    """Every required item with whether it exists."""
    return [(item, exists(client, item)) for item in REQUIRED]


def provision(
    client: DataverseClient, *, dry_run: bool = False, report: Callable[[str], None] = print
) -> tuple[list[Item], list[Item]]:
    """Create what is missing, in order (a table before its columns and keys). (created, existing)."""
    created: list[Item] = []
    existing: list[Item] = []
    for item in REQUIRED:
        if exists(client, item):
            existing.append(item)
            report(f"exists   {item.describe()}")
            continue
        if dry_run:
            report(f"would create {item.describe()}")
        else:
            client.request("POST", item.create_path, json=item.body, idempotent=False)
            report(f"created  {item.describe()}")
        created.append(item)
    return created, existing
