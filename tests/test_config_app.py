"""Configuration tables, the calls-for-review view and the "Enreach Bridge" model-driven app,
provisioned over HTTP against the Dataverse emulator (issue 19, items 1-3).

The app calls follow MicrosoftDocs/powerapps-docs
``powerapps-docs/developer/model-driven-apps/create-manage-model-driven-apps-using-code.md``
(appmodules POST, AddAppComponents, ValidateApp, PublishXml, RetrieveUnpublishedMultiple), the
entity references ``developer/data-platform/reference/entities/appmodule.md``, ``sitemap.md``,
``appmodulecomponent.md``, and ``developer/model-driven-apps/customize-entity-views.md`` (savedquery);
the typed columns ``developer/data-platform/webapi/create-update-column-definitions-using-web-api.md``.
"""

from __future__ import annotations

import pytest

from bridge.settings import load_settings
from core.schema import BRIDGE_RUN, BRIDGE_SETTING, CONFIG_TABLES, REVIEW_VIEW_NAME, ROUTING_RULE
from dataverse import DataverseError
from ops.app import APP, check_app, ensure_app
from ops.doctor import run_doctor
from ops.provision import provision
from tests.helpers import dataverse_client_for


@pytest.fixture()
def client(world):
    settings = load_settings(world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"}))
    c = dataverse_client_for(settings)
    yield c
    c.close()


def test_provision_creates_the_tables_the_view_and_a_published_app_and_a_second_run_changes_nothing(world, client):
    lines: list[str] = []
    provision(client, report=lines.append)
    for table in CONFIG_TABLES:
        emulated = world.dataverse.table(table.entity_set)
        assert emulated.alternate_keys == {table.key_name: (table.name_column,)}
        assert {c.read_name for c in table.columns} <= emulated.columns
    assert "_enr_user_value" in world.dataverse.table(BRIDGE_SETTING.entity_set).columns  # lookup to systemuser
    assert "_enr_targetuser_value" in world.dataverse.table(ROUTING_RULE.entity_set).columns
    [view] = [r for r in world.dataverse.rows("savedqueries") if r["name"] == REVIEW_VIEW_NAME]
    assert view["name"] == REVIEW_VIEW_NAME and view["returnedtypecode"] == "phonecall" and view["querytype"] == 0
    assert '<condition attribute="enr_callreview" operator="not-null"/>' in view["fetchxml"]
    [sitemap] = world.dataverse.rows("sitemaps")
    for title in ("Settings", "Routing rules", "Run status", "Calls for review"):
        assert f'Title="{title}"' in sitemap["sitemapxml"]
    assert view["savedqueryid"] in sitemap["sitemapxml"]
    [app] = world.dataverse.rows("appmodules")
    # "the name is automatically prefixed with your solution publisher prefix"
    assert app["uniquename"] == "enr_EnreachBridge" and app["name"] == "Enreach Bridge"
    assert app["componentstate"] == 0  # published
    components = {
        (r["componenttype"], r["objectid"])
        for r in world.dataverse.rows("appmodulecomponents")
        if r["_appmoduleidunique_value"] == app["appmoduleidunique"]
    }
    assert (62, sitemap["sitemapid"]) in components and (26, view["savedqueryid"]) in components
    assert sum(1 for kind, _ in components if kind == 1) == 4  # the three tables and phonecall
    assert lines[-1] == "published app 'Enreach Bridge'"
    # GET appmodules lists published apps (the document's "Retrieve published apps")
    assert [a["name"] for a in client.query("appmodules", select=["name", "clienttype"])] == ["Enreach Bridge"]

    world.dataverse.reset_requests()
    again: list[str] = []
    provision(client, report=again.append)
    assert world.dataverse.request_count(method="POST") == 0 and world.dataverse.request_count(method="PATCH") == 0
    assert not any(line.startswith(("created", "added", "published", "updated")) for line in again)
    assert check_app(client) == []


def test_a_new_app_is_unpublished_and_does_not_validate_without_a_site_map(world, client):
    provision(client, report=lambda line: None)
    response = client.request(
        "POST",
        "appmodules",
        json={"name": "Other", "uniquename": "Other", "webresourceid": "953b9fac-1e5e-e611-80d6-00155ded156f"},
        idempotent=False,
    )
    app_id = response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert [a["name"] for a in client.query("appmodules", select=["name"])] == ["Enreach Bridge"]
    unpublished = client.request(
        "GET", "appmodules/Microsoft.Dynamics.CRM.RetrieveUnpublishedMultiple()", params={"$select": "name"}
    ).json()["value"]
    assert sorted(a["name"] for a in unpublished) == ["Enreach Bridge", "Other"]
    answer = client.request("GET", f"ValidateApp(AppModuleId={app_id})").json()
    assert answer["AppValidationResponse"]["ValidationSuccess"] is False
    assert answer["AppValidationResponse"]["ValidationIssueList"][0]["Message"] == "App does not contain Site Map"
    with pytest.raises(DataverseError):  # a component must say what it is
        client.request("POST", "AddAppComponents", json={"AppId": app_id, "Components": [{"sitemapid": app_id}]})


def test_dry_run_writes_nothing_and_a_lost_component_is_added_back(world, client):
    lines: list[str] = []
    provision(client, dry_run=True, report=lines.append)
    assert "would create app 'Enreach Bridge'" in lines and world.dataverse.request_count(method="POST") == 0
    provision(client, report=lambda line: None)
    table = world.dataverse.table("appmodulecomponents")
    sitemap_row = next(k for k, r in table.rows.items() if r["componenttype"] == 62)
    table.remove(sitemap_row)  # someone removed the site map from the app in the designer
    assert ensure_app(client, solution="EnreachBridge", report=lambda line: None) == 1
    assert any(r["componenttype"] == 62 for r in world.dataverse.rows("appmodulecomponents"))


def test_the_doctor_names_a_missing_app(world):
    env = world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"})
    checks = {c.name: c for c in run_doctor(env)}
    app = checks["Enreach Bridge app and calls-for-review view"]
    assert not app.ok and "app" in app.detail and app.fix == "run: python -m ops provision"


def test_choice_columns_use_the_publisher_option_prefix():
    from ops.provision import REQUIRED

    kind = next(i for i in REQUIRED if i.entity == ROUTING_RULE.logical_name and i.name == "enr_kind")
    values = [o["Value"] for o in kind.body["OptionSet"]["Options"]]
    assert values[0] == 727_000_000 and len(values) == 6
    outcome = BRIDGE_RUN.column("enr_outcome")
    assert outcome.option_value("partial") == 727_000_001 and outcome.option_label(727_000_002) == "failed"
    assert APP.unique_name == "EnreachBridge"


def test_app_parts_made_in_another_solution_are_added_to_this_one(world, client):
    provision(client, report=lambda line: None)
    lines: list[str] = []
    provision(client, solution="ContosoTelephony", report=lines.append)
    assert {
        "exists   view; added to solution ContosoTelephony",
        "exists   app; added to solution ContosoTelephony",
    } <= set(lines)
    world.dataverse.reset_requests()
    provision(client, solution="ContosoTelephony", report=lambda line: None)
    assert world.dataverse.request_count(method="POST") == 0
