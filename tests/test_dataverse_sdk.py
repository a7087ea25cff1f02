"""Conformance: Microsoft's Python SDK (PowerPlatform-Dataverse-Client 1.1.0) against the Dataverse emulator.

Nobody here wrote the SDK, so what it sends is what a real client sends. The emulator runs with TLS
(the SDK refuses ``http://``) on the test CA; nothing else is adapted. Each test names the Microsoft
document (MicrosoftDocs/powerapps-docs, under ``powerapps-docs/developer/data-platform/``) that says
how Dataverse answers; the requests the SDK sends are read from its source (``data/_odata.py``,
``data/_batch_base.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError
from PowerPlatform.Dataverse.models.upsert import UpsertItem

from emulators.dataverse import DataverseEmulator
from sandbox.services import SANDBOX_CREDENTIALS, Services

API = "/api/data/v9.2/"


@pytest.fixture(scope="module")
def tls_dataverse(services: Services) -> Iterator[DataverseEmulator]:
    """A Dataverse emulator of its own, over TLS with the session's test CA and token issuer."""
    emulator = DataverseEmulator(services.issuer, ssl_context=services.ca.server_context())
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture()
def dataverse(tls_dataverse: DataverseEmulator) -> DataverseEmulator:
    tls_dataverse.reset()
    tls_dataverse.reset_requests()
    return tls_dataverse


@pytest.fixture(scope="module")
def credential(services: Services) -> ClientSecretCredential:
    return ClientSecretCredential(
        SANDBOX_CREDENTIALS["AZURE_TENANT_ID"],
        SANDBOX_CREDENTIALS["AZURE_CLIENT_ID"],
        SANDBOX_CREDENTIALS["AZURE_CLIENT_SECRET"],
        authority=services.tokens.url,
        disable_instance_discovery=True,
    )


@pytest.fixture()
def sdk(dataverse: DataverseEmulator, credential: ClientSecretCredential) -> Iterator[DataverseClient]:
    with DataverseClient(dataverse.url, credential) as client:
        yield client


def raw(
    dataverse: DataverseEmulator, credential: ClientSecretCredential, method: str, path: str, **kwargs: Any
) -> requests.Response:
    """One plain Web API request with the SDK's own token (for what the SDK does not expose)."""
    token = credential.get_token(f"{dataverse.url}/.default").token
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", **kwargs.pop("headers", {})}
    return requests.request(method, f"{dataverse.url}{API}{path}", headers=headers, timeout=10, **kwargs)


def test_the_sdk_refuses_http_so_the_emulator_serves_tls(credential: ClientSecretCredential) -> None:
    with pytest.raises(ValueError, match="HTTPS"):
        DataverseClient("http://127.0.0.1:1", credential)


def test_create_get_update_delete(sdk: DataverseClient, dataverse: DataverseEmulator) -> None:
    """webapi/create-entity-web-api.md, retrieve-entity-using-web-api.md, update-delete-entities-using-web-api.md.
    The SDK first resolves the entity set with ``GET EntityDefinitions?$select=…&$filter=LogicalName eq
    'contact'`` and reads picklist labels through ``…/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata``
    (webapi/query-metadata-web-api.md); ``fullname`` is derived from first and last name
    (reference/entities/contact.md: FullName combines the first and last names)."""
    contact_id = sdk.records.create("contact", {"firstname": "Ada", "lastname": "Lovelace", "jobtitle": "Analyst"})
    record = sdk.records.retrieve("contact", contact_id, select=["fullname", "jobtitle"])
    assert record is not None and record["fullname"] == "Ada Lovelace"
    assert record["jobtitle"] == "Analyst"

    sdk.records.update("contact", contact_id, {"lastname": "King", "jobtitle": "Countess"})
    record = sdk.records.retrieve("contact", contact_id, select=["fullname", "jobtitle"])
    assert record is not None
    assert (record["fullname"], record["jobtitle"]) == ("Ada King", "Countess")

    sdk.records.delete("contact", contact_id)
    assert sdk.records.retrieve("contact", contact_id) is None  # the SDK's answer to a 404
    assert dataverse.request_count("EntityDefinitions", "GET") >= 1


def test_query_with_filter_select_order_top_and_paging(
    sdk: DataverseClient, dataverse: DataverseEmulator, credential: ClientSecretCredential
) -> None:
    """webapi/query/filter-rows.md, select-columns.md, order-rows.md, page-results.md (``Prefer:
    odata.maxpagesize`` and ``@odata.nextLink``), count-rows.md (``$count=true`` → ``@odata.count``)."""
    for i in range(7):
        dataverse.load({"contacts": [{"firstname": f"P{i}", "lastname": "Paging", "jobtitle": "x"}]})
    dataverse.load({"contacts": [{"firstname": "Other", "lastname": "Someone"}]})
    dataverse.reset_requests()

    pages = list(
        sdk.records.list_pages(
            "contact", filter="lastname eq 'Paging'", select=["firstname"], orderby=["firstname desc"], page_size=3
        )
    )
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [r["firstname"] for page in pages for r in page] == [f"P{i}" for i in reversed(range(7))]
    assert set(pages[0][0].keys()) >= {"firstname"} and "jobtitle" not in pages[0][0]
    assert dataverse.request_count("contacts", "GET") == 3

    top = sdk.records.list("contact", filter="lastname eq 'Paging'", orderby=["firstname"], top=2)
    assert [r["firstname"] for r in top] == ["P0", "P1"]

    one_per_page = {"Prefer": "odata.maxpagesize=1"}
    counted = raw(
        dataverse, credential, "GET", "contacts?$filter=lastname eq 'Paging'&$count=true", headers=one_per_page
    ).json()
    assert counted["@odata.count"] == 7 and len(counted["value"]) == 1
    plain = raw(dataverse, credential, "GET", "contacts?$filter=lastname eq 'Paging'").json()
    assert "@odata.count" not in plain


def test_upsert_one_and_many_by_alternate_key(sdk: DataverseClient, dataverse: DataverseEmulator) -> None:
    """webapi/update-delete-entities-using-web-api.md#upsert-a-table-row (one: PATCH by the key) and
    bulk-operations.md (many: ``UpsertMultiple``, each target named by ``@odata.id``); the key is
    created and listed through ``EntityDefinitions(LogicalName='contact')/Keys``
    (define-alternate-keys-entity.md, webapi/create-update-entity-definitions-using-web-api.md)."""
    key = sdk.tables.create_alternate_key("contact", "new_email_key", ["emailaddress1"])
    assert key.metadata_id
    assert [k.schema_name for k in sdk.tables.get_alternate_keys("contact")] == ["new_email_key"]

    sdk.records.upsert(
        "contact", [UpsertItem(alternate_key={"emailaddress1": "one@example.com"}, record={"lastname": "One"})]
    )
    assert dataverse.request_count("contacts(emailaddress1=", "PATCH") == 1
    sdk.records.upsert(
        "contact",
        [
            UpsertItem(alternate_key={"emailaddress1": "one@example.com"}, record={"lastname": "Uno"}),
            UpsertItem(alternate_key={"emailaddress1": "two@example.com"}, record={"lastname": "Two"}),
        ],
    )
    assert dataverse.request_count("Microsoft.Dynamics.CRM.UpsertMultiple", "POST") == 1
    rows = {r["emailaddress1"]: r["lastname"] for r in dataverse.rows("contacts")}
    assert rows == {"one@example.com": "Uno", "two@example.com": "Two"}


def test_create_multiple_and_where_it_is_not_available(sdk: DataverseClient, dataverse: DataverseEmulator) -> None:
    """bulk-operations.md: ``CreateMultiple`` answers the new ``Ids``; "not all standard tables support
    these messages": reference/entities/contact.md lists CreateMultiple, reference/entities/phonecall.md
    does not, and a refused bulk message creates nothing."""
    ids = sdk.records.create("contact", [{"lastname": "Bulk A"}, {"lastname": "Bulk B"}])
    assert len(ids) == 2
    assert {r["contactid"] for r in dataverse.rows("contacts")} == set(ids)

    with pytest.raises(HttpError) as refused:
        sdk.records.create("phonecall", [{"subject": "a"}, {"subject": "b"}])
    assert refused.value.status_code == 400
    assert "CreateMultiple" in str(refused.value)
    assert dataverse.rows("phonecalls") == []


def test_batch_with_a_get_and_a_change_set(sdk: DataverseClient, dataverse: DataverseEmulator) -> None:
    """webapi/execute-batch-operations-using-web-api.md: a GET beside a change set whose second request
    references the first by Content-ID. The SDK writes the GET's ``$filter`` with unencoded spaces;
    Microsoft's OData reader splits the request line at its first and last space only."""
    dataverse.load({"contacts": [{"firstname": "Existing", "lastname": "Batch"}]})
    batch = sdk.batch.new()
    batch.records.list("contact", filter="lastname eq 'Batch'", select=["firstname"])
    with batch.changeset() as change_set:
        reference = change_set.records.create("contact", {"firstname": "New", "lastname": "Batch"})
        change_set.records.update("contact", reference, {"jobtitle": "Created in a change set"})
    result = batch.execute()

    assert not result.has_errors, [(r.status_code, r.error_message) for r in result.failed]
    listed = result.responses[0].data or {}
    assert [r["firstname"] for r in listed.get("value", [])] == ["Existing"]
    created = [r for r in dataverse.rows("contacts") if r.get("firstname") == "New"]
    assert [r["jobtitle"] for r in created] == ["Created in a change set"]
    assert dataverse.request_count("$batch", "POST") == 1


def test_table_and_column_metadata(sdk: DataverseClient, dataverse: DataverseEmulator) -> None:
    """webapi/query-metadata-web-api.md (EntityDefinitions with ``$select``/``$filter``; Attributes by
    collection, filter and LogicalName) and webapi/create-update-entity-definitions-using-web-api.md
    (``POST EntityDefinitions(<MetadataId>)/Attributes``, ``DELETE`` of a column)."""
    table = sdk.tables.get("contact")
    assert table is not None
    assert (table.entity_set_name, table.primary_id_attribute, table.primary_name_attribute) == (
        "contacts",
        "contactid",
        "fullname",
    )
    listed = sdk.tables.list(filter="LogicalName eq 'contact'", select=["LogicalName", "EntitySetName"])
    assert [t["LogicalName"] for t in listed] == ["contact"]

    strings = sdk.tables.list_columns("contact", select=["LogicalName"], filter="AttributeType eq 'String'")
    names = {c["LogicalName"] for c in strings}
    assert {"firstname", "lastname", "emailaddress1"} <= names and "contactid" not in names
    column = sdk.tables.get_column("contact", "firstname", select=["LogicalName", "AttributeType"])
    assert column is not None and column["AttributeType"] == "String"
    assert sdk.tables.get_column("contact", "nosuchcolumn") is None

    sdk.tables.add_columns("contact", {"new_Nickname": "string"})
    assert sdk.tables.get_column("contact", "new_nickname") is not None
    sdk.records.create("contact", {"lastname": "Has", "new_nickname": "nick"})
    sdk.tables.remove_columns("contact", ["new_nickname"])
    assert sdk.tables.get_column("contact", "new_nickname") is None
