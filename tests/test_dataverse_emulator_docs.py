"""The Dataverse emulator answers as Microsoft documents, over HTTP, for what Microsoft's SDK and other clients use.

Each test names its document in MicrosoftDocs/powerapps-docs, under ``powerapps-docs/developer/data-platform/``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from dataverse import DataverseClient, DataverseError
from sandbox.services import Services


def get(client: DataverseClient, path: str, **kwargs: Any) -> Any:
    return client.request("GET", path, **kwargs).json()


def failure(client: DataverseClient, method: str, path: str, **kwargs: Any) -> DataverseError:
    with pytest.raises(DataverseError) as raised:
        client.request(method, path, **kwargs)
    return raised.value


def test_entity_definitions_filter_and_select(world: Services, dataverse_client: DataverseClient) -> None:
    """webapi/query-metadata-web-api.md: EntityDefinitions takes ``$select`` and ``$filter`` on primitive
    properties, has no paging, and always returns ``MetadataId``."""
    found = get(
        dataverse_client,
        "EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq 'contact'",
    )
    assert [set(e) for e in found["value"]] == [{"LogicalName", "EntitySetName", "PrimaryIdAttribute", "MetadataId"}]
    assert found["value"][0]["EntitySetName"] == "contacts"
    public = get(dataverse_client, "EntityDefinitions?$select=LogicalName&$filter=IsPrivate eq false")
    assert {"contact", "account", "phonecall"} <= {e["LogicalName"] for e in public["value"]}
    assert get(dataverse_client, "EntityDefinitions?$filter=LogicalName eq 'nosuchtable'")["value"] == []
    assert failure(dataverse_client, "GET", "EntityDefinitions?$select=NoSuchProperty").status == 400


def test_select_on_one_entity_definition_by_name_or_metadata_id(
    world: Services, dataverse_client: DataverseClient
) -> None:
    """webapi/query-metadata-web-api.md: ``EntityDefinitions(LogicalName='account')?$select=…`` returns the
    selected properties and ``MetadataId``; a definition is also addressed by its MetadataId."""
    account = get(dataverse_client, "EntityDefinitions(LogicalName='account')?$select=EntitySetName")
    assert {k for k in account if not k.startswith("@")} == {"EntitySetName", "MetadataId"}
    by_id = get(dataverse_client, f"EntityDefinitions({account['MetadataId']})?$select=LogicalName")
    assert by_id["LogicalName"] == "account"


def test_attribute_casts_and_option_sets(world: Services, dataverse_client: DataverseClient) -> None:
    """webapi/query-metadata-web-api.md "Querying EntityMetadata attributes": casting ``Attributes`` to
    ``Microsoft.Dynamics.CRM.PicklistAttributeMetadata`` returns only choice columns, with ``OptionSet``
    when expanded; a single attribute is addressed by LogicalName or MetadataId."""
    path = "EntityDefinitions(LogicalName='contact')/Attributes"
    picklists = get(
        dataverse_client,
        f"{path}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)",
    )["value"]
    by_name = {a["LogicalName"]: a for a in picklists}
    assert "preferredcontactmethodcode" in by_name and "firstname" not in by_name
    options = by_name["preferredcontactmethodcode"]["OptionSet"]["Options"]
    assert (options[1]["Value"], options[1]["Label"]["UserLocalizedLabel"]["Label"]) == (2, "Email")
    strings = get(dataverse_client, f"{path}?$select=LogicalName&$filter=AttributeType eq 'String'")["value"]
    assert "firstname" in {a["LogicalName"] for a in strings}
    one = get(dataverse_client, f"{path}(LogicalName='firstname')?$select=AttributeType")
    assert one["AttributeType"] == "String"
    assert get(dataverse_client, f"{path}({one['MetadataId']})")["LogicalName"] == "firstname"
    assert failure(dataverse_client, "GET", f"{path}/Microsoft.Dynamics.CRM.NoSuchAttributeMetadata").status == 400


def test_keys_collection(world: Services, dataverse_client: DataverseClient) -> None:
    """define-alternate-keys-entity.md / webapi/create-update-entity-definitions-using-web-api.md: the
    ``Keys`` collection-valued navigation property lists a table's alternate keys."""
    world.dataverse.add_alternate_key("phonecalls", "enr_enreachcallid_key", ["enr_enreachcallid"])
    keys = get(dataverse_client, "EntityDefinitions(LogicalName='phonecall')/Keys")["value"]
    assert [(k["SchemaName"], k["KeyAttributes"], k["EntityKeyIndexStatus"]) for k in keys] == [
        ("enr_enreachcallid_key", ["enr_enreachcallid"], "Active")
    ]
    assert get(dataverse_client, "EntityDefinitions(LogicalName='contact')/Keys")["value"] == []


def test_count_true_returns_odata_count(world: Services, dataverse_client: DataverseClient) -> None:
    """webapi/query/count-rows.md: ``$count=true`` adds ``@odata.count``, the rows matching the filter
    irrespective of the page size."""
    world.dataverse.load({"accounts": [{"name": f"Counted {i}"} for i in range(4)]})
    page = get(
        dataverse_client,
        "accounts?$select=name&$filter=startswith(name,'Counted')&$count=true",
        headers={"Prefer": "odata.maxpagesize=2"},
    )
    assert page["@odata.count"] == 4 and len(page["value"]) == 2
    assert "@odata.count" not in get(dataverse_client, "accounts?$select=name")


def test_batch_get_whose_url_holds_spaces(world: Services, dataverse_client: DataverseClient) -> None:
    """webapi/execute-batch-operations-using-web-api.md: each part is an HTTP request line; the OData
    reader splits it at the first and last space only, so ``$filter=name eq 'A B'`` unencoded is read whole."""
    world.dataverse.load({"accounts": [{"name": "Space Corp"}, {"name": "Other"}]})
    body = (
        "--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "GET accounts?$select=name&$filter=name eq 'Space Corp' HTTP/1.1\r\nAccept: application/json\r\n\r\n"
        "--batch_x--\r\n"
    )
    answer = dataverse_client.request(
        "POST", "$batch", data=body.encode(), headers={"Content-Type": "multipart/mixed; boundary=batch_x"}
    )
    assert "HTTP/1.1 200" in answer.text
    assert '"name": "Space Corp"' in answer.text and "Other" not in answer.text


def test_fullname_is_derived_from_first_and_last_name(world: Services, dataverse_client: DataverseClient) -> None:
    """reference/entities/contact.md: FullName "combines and shows the contact's first and last names"."""
    created = dataverse_client.request("POST", "leads", json={"firstname": "Grace", "lastname": "Hopper"})
    lead_id = re.search(r"\(([0-9a-f-]{36})\)", created.headers["OData-EntityId"]).group(1)  # type: ignore[union-attr]
    assert get(dataverse_client, f"leads({lead_id})?$select=fullname")["fullname"] == "Grace Hopper"
    dataverse_client.request("PATCH", f"leads({lead_id})", json={"firstname": None})
    assert get(dataverse_client, f"leads({lead_id})?$select=fullname")["fullname"] == "Hopper"


def test_created_table_is_named_by_its_metadata_id(world: Services, dataverse_client: DataverseClient) -> None:
    """webapi/create-update-entity-definitions-using-web-api.md: creating a table answers 204 with
    ``OData-EntityId: …/EntityDefinitions(<MetadataId>)``; its columns likewise."""
    table = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": "new_BankAccount",
        "OwnershipType": "UserOwned",
        "Attributes": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                "SchemaName": "new_AccountName",
                "IsPrimaryName": True,
                "MaxLength": 100,
            }
        ],
    }
    answer = dataverse_client.request("POST", "EntityDefinitions", json=table)
    assert answer.status_code == 204
    metadata_id = get(dataverse_client, "EntityDefinitions(LogicalName='new_bankaccount')?$select=LogicalName")[
        "MetadataId"
    ]
    assert answer.headers["OData-EntityId"].endswith(f"/EntityDefinitions({metadata_id})")
    column = {"@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata", "SchemaName": "new_Balance"}
    added = dataverse_client.request("POST", f"EntityDefinitions({metadata_id})/Attributes", json=column)
    column_id = get(dataverse_client, f"EntityDefinitions({metadata_id})/Attributes(LogicalName='new_balance')")
    assert added.headers["OData-EntityId"].endswith(f"/Attributes({column_id['MetadataId']})")
    assert column_id["AttributeType"] == "Integer"
    definition = get(dataverse_client, f"EntityDefinitions({metadata_id})")
    assert (definition["PrimaryNameAttribute"], definition["EntitySetName"]) == ("new_accountname", "new_bankaccounts")


def test_bulk_messages_need_odata_type_and_roll_back_whole(world: Services, dataverse_client: DataverseClient) -> None:
    """bulk-operations.md: every target must set ``@odata.type``; on a standard table any error rolls the
    whole operation back; UpdateMultiple of a row that does not exist fails ("Contact With Ids = … Do Not Exist")."""
    untyped = failure(
        dataverse_client, "POST", "contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [{}]}
    )
    assert untyped.status == 400
    typed = {"@odata.type": "Microsoft.Dynamics.CRM.contact"}
    bad = {"Targets": [{**typed, "lastname": "Kept?"}, {**typed, "nosuchcolumn": 1}]}
    assert failure(dataverse_client, "POST", "contacts/Microsoft.Dynamics.CRM.CreateMultiple", json=bad).status == 400
    assert world.dataverse.rows("contacts") == []

    made = dataverse_client.request(
        "POST", "contacts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": [{**typed, "lastname": "A"}]}
    ).json()
    assert made["@odata.context"].endswith("#Microsoft.Dynamics.CRM.CreateMultipleResponse")
    (contact_id,) = made["Ids"]
    missing = {**typed, "contactid": str(uuid.uuid4()), "lastname": "Nobody"}
    update = {"Targets": [{**typed, "contactid": contact_id, "lastname": "Changed?"}, missing]}
    error = failure(dataverse_client, "POST", "contacts/Microsoft.Dynamics.CRM.UpdateMultiple", json=update)
    assert error.status == 404
    assert [r["lastname"] for r in world.dataverse.rows("contacts")] == ["A"]

    world.dataverse.add_alternate_key("contacts", "email_key", ["emailaddress1"])
    upsert = {
        "Targets": [
            {**typed, "emailaddress1": "a@example.com", "lastname": "Upserted"},
            {**typed, "@odata.id": "contacts(emailaddress1='b@example.com')", "lastname": "B"},
        ]
    }
    results = dataverse_client.request("POST", "contacts/Microsoft.Dynamics.CRM.UpsertMultiple", json=upsert).json()
    assert [r["RecordCreated"] for r in results["Results"]] == [True, True]
    results = dataverse_client.request("POST", "contacts/Microsoft.Dynamics.CRM.UpsertMultiple", json=upsert).json()
    assert [r["RecordCreated"] for r in results["Results"]] == [False, False]
    assert len(world.dataverse.rows("contacts")) == 3


def test_bulk_messages_are_not_available_for_phone_calls(world: Services, dataverse_client: DataverseClient) -> None:
    """bulk-operations.md "Availability with standard tables": not all standard tables support these
    messages; reference/entities/phonecall.md lists Create, Update and Upsert but no CreateMultiple,
    UpdateMultiple or UpsertMultiple (contact.md lists all three)."""
    typed = {"@odata.type": "Microsoft.Dynamics.CRM.phonecall", "subject": "Call"}
    for message in ("CreateMultiple", "UpdateMultiple", "UpsertMultiple"):
        error = failure(
            dataverse_client, "POST", f"phonecalls/Microsoft.Dynamics.CRM.{message}", json={"Targets": [typed]}
        )
        assert error.status == 400 and message in str(error)
    assert world.dataverse.rows("phonecalls") == []
