"""The "Enreach Bridge" model-driven app and the calls-for-review view, created by provisioning.

Follows MicrosoftDocs/powerapps-docs ``powerapps-docs/developer/model-driven-apps/
create-manage-model-driven-apps-using-code.md``: create the ``appmodule`` row, add its components
with ``AddAppComponents`` (the tables, the site map, the view), check it with ``ValidateApp``, publish
it with ``PublishXml``. The site map (``sitemap`` row) has one area with Settings, Routing rules,
Run status and Calls for review; the view is a ``savedquery`` on phonecall (``customize-entity-views.md``)
listing the calls whose ``enr_callreview`` is set.

Idempotent: each part is looked up first (the app among the unpublished apps too, since a new app
is unpublished until published), and only what is missing or different is written; an unchanged
environment costs reads only. Who may use and change it: see docs/administration.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from core.schema import BRIDGE_RUN, BRIDGE_SETTING, CALL_SYNC, REVIEW_VIEW_NAME, ROUTING_RULE
from dataverse import DataverseClient, NotFound
from dataverse import filters as f

__all__ = ["APP", "AppParts", "check_app", "ensure_app", "review_view_xml", "sitemap_xml"]

# The default app icon Dataverse provides (create-manage-model-driven-apps-using-code.md).
DEFAULT_ICON = "953b9fac-1e5e-e611-80d6-00155ded156f"
PHONECALL_TYPE_CODE = 4210  # phonecall's ObjectTypeCode (a view's grid names it)


@dataclass(frozen=True)
class AppDefinition:
    name: str = "Enreach Bridge"
    unique_name: str = "EnreachBridge"  # Dataverse prefixes it with the publisher's prefix: enr_EnreachBridge
    sitemap_unique_name: str = "enr_enreachbridge"
    description: str = "Configure and watch the Enreach bridge: settings, routing rules, run status, calls for review"


APP = AppDefinition()


def review_view_xml() -> tuple[str, str]:
    """(fetchxml, layoutxml) of the calls-for-review view."""
    review = CALL_SYNC.review_column
    fetch = (
        '<fetch version="1.0" mapping="logical"><entity name="phonecall">'
        '<attribute name="subject"/><attribute name="actualstart"/>'
        f'<attribute name="{review}"/><attribute name="ownerid"/><attribute name="activityid"/>'
        '<order attribute="actualstart" descending="true"/>'
        f'<filter type="and"><condition attribute="{review}" operator="not-null"/></filter>'
        "</entity></fetch>"
    )
    layout = (
        f'<grid name="resultset" object="{PHONECALL_TYPE_CODE}" jump="subject" select="1" icon="1" preview="1">'
        '<row name="result" id="activityid">'
        '<cell name="subject" width="200"/><cell name="actualstart" width="150"/>'
        f'<cell name="{review}" width="300"/><cell name="ownerid" width="150"/>'
        "</row></grid>"
    )
    return fetch, layout


def _subarea(area_id: str, title: str, *, entity: str = "", url: str = "") -> str:
    target = f'Entity="{entity}"' if entity else f'Url="{escape(url)}"'
    return f'<SubArea Id="{area_id}" {target}><Titles><Title LCID="1033" Title="{escape(title)}"/></Titles></SubArea>'


def sitemap_xml(view_id: str) -> str:
    """Settings, Routing rules, Run status and Calls for review (the review view, by id)."""
    review_url = f"/main.aspx?pagetype=entitylist&etn=phonecall&viewid=%7b{view_id}%7d&viewtype=1039"
    return (
        '<SiteMap IntroducedVersion="7.0.0.0">'
        '<Area Id="enr_bridge" ShowGroups="true"><Titles><Title LCID="1033" Title="Enreach Bridge"/></Titles>'
        '<Group Id="enr_configuration"><Titles><Title LCID="1033" Title="Configuration"/></Titles>'
        + _subarea("enr_settings", "Settings", entity=BRIDGE_SETTING.logical_name)
        + _subarea("enr_routingrules", "Routing rules", entity=ROUTING_RULE.logical_name)
        + "</Group>"
        '<Group Id="enr_monitoring"><Titles><Title LCID="1033" Title="Monitoring"/></Titles>'
        + _subarea("enr_runstatus", "Run status", entity=BRIDGE_RUN.logical_name)
        + _subarea("enr_callsforreview", "Calls for review", url=review_url)
        + "</Group></Area></SiteMap>"
    )


@dataclass
class AppParts:
    """What exists: ids (None when absent) and whether the app is published."""

    view_id: str | None = None
    sitemap_id: str | None = None
    sitemap_xml: str | None = None
    app_id: str | None = None
    app_unique: str | None = None
    published: bool = False
    components: frozenset[str] = frozenset()  # object ids already in the app

    def missing(self) -> list[str]:
        parts = [("view " + REVIEW_VIEW_NAME, self.view_id), ("site map", self.sitemap_id), ("app", self.app_id)]
        gone = [name for name, value in parts if value is None]
        if self.app_id is not None and not self.published:
            gone.append("published app")
        return gone


def _unique_names() -> list[str]:
    return [APP.unique_name, f"enr_{APP.unique_name}"]


def find_parts(client: DataverseClient) -> AppParts:
    parts = AppParts()
    views = client.query_page(
        "savedqueries",
        select=["savedqueryid"],
        filter=f.and_(f.eq("returnedtypecode", "phonecall"), f.eq("name", REVIEW_VIEW_NAME)),
        top=1,
    ).records
    parts.view_id = str(views[0]["savedqueryid"]) if views else None
    maps = client.query_page(
        "sitemaps", select=["sitemapid", "sitemapxml"], filter=f.eq("sitemapnameunique", APP.sitemap_unique_name), top=1
    ).records
    if maps:
        parts.sitemap_id, parts.sitemap_xml = str(maps[0]["sitemapid"]), maps[0].get("sitemapxml")
    apps = client.request(
        "GET",
        "appmodules/Microsoft.Dynamics.CRM.RetrieveUnpublishedMultiple()",
        params={
            "$select": "appmoduleid,appmoduleidunique,uniquename,componentstate",
            "$filter": f.or_(*(f.eq("uniquename", name) for name in _unique_names())),
        },
    ).json()["value"]
    if apps:
        parts.app_id, parts.app_unique = str(apps[0]["appmoduleid"]), str(apps[0]["appmoduleidunique"])
        published = client.query_page(
            "appmodules", select=["appmoduleid"], filter=f.eq("appmoduleid", uuid.UUID(parts.app_id)), top=1
        ).records
        parts.published = bool(published)
        parts.components = frozenset(
            str(row["objectid"]).lower()
            for row in client.query(
                "appmodulecomponents",
                select=["objectid"],
                filter=f.eq("_appmoduleidunique_value", uuid.UUID(parts.app_unique)),
            )
        )
    return parts


def check_app(client: DataverseClient) -> list[str]:
    """What the doctor reports missing: the view, the site map, the app, its publication."""
    return find_parts(client).missing()


def _table_id(client: DataverseClient, logical: str) -> str | None:
    try:
        meta = client.request("GET", f"EntityDefinitions(LogicalName='{logical}')?$select=MetadataId").json()
    except NotFound:
        return None
    return str(meta["MetadataId"]).lower()


def _create(client: DataverseClient, entity_set: str, body: dict[str, Any], solution: str) -> str:
    response = client.request(
        "POST", entity_set, json=body, headers={"MSCRM.SolutionUniqueName": solution}, idempotent=False
    )
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")").lower()


# solutioncomponent.componenttype of the app's parts
SOLUTION_COMPONENT_TYPES = {"view": 26, "site map": 62, "app": 80}


def _into_solution(
    client: DataverseClient,
    parts: AppParts,
    *,
    solution: str,
    members: set[str],
    dry_run: bool,
    report: Callable[[str], None],
) -> int:
    """Add existing parts missing from the solution (made in another one, or by hand)."""
    added = 0
    for label, part_id in (("view", parts.view_id), ("site map", parts.sitemap_id), ("app", parts.app_id)):
        if part_id is None or part_id.lower() in members:
            continue
        added += 1
        if dry_run:
            report(f"exists   {label}; would add it to solution {solution}")
            continue
        client.request(
            "POST",
            "AddSolutionComponent",
            json={
                "ComponentId": part_id,
                "ComponentType": SOLUTION_COMPONENT_TYPES[label],
                "SolutionUniqueName": solution,
                "AddRequiredComponents": False,
                "DoNotIncludeSubcomponents": False,
            },
            idempotent=True,
        )
        report(f"exists   {label}; added to solution {solution}")
    return added


def ensure_app(
    client: DataverseClient,
    *,
    solution: str,
    dry_run: bool = False,
    report: Callable[[str], None] = print,
    members: set[str] | None = None,
) -> int:
    """Create or complete the view, the site map and the app; validate and publish when something
    changed; add existing parts missing from the solution (``members``: its component ids).
    Returns how many parts were (or would be) written."""
    parts = find_parts(client)
    changes = 0
    if members is not None:
        changes += _into_solution(client, parts, solution=solution, members=members, dry_run=dry_run, report=report)
    fetch, layout = review_view_xml()
    if parts.view_id is None:
        changes += 1
        if dry_run:
            report(f"would create view phonecall '{REVIEW_VIEW_NAME}'")
        else:
            parts.view_id = _create(
                client,
                "savedqueries",
                {
                    "name": REVIEW_VIEW_NAME,
                    "description": "Phone calls whose number matched several records: pick the regarding record",
                    "returnedtypecode": "phonecall",
                    "querytype": 0,
                    "fetchxml": fetch,
                    "layoutxml": layout,
                },
                solution,
            )
            report(f"created  view phonecall '{REVIEW_VIEW_NAME}'")
    else:
        report(f"exists   view phonecall '{REVIEW_VIEW_NAME}'")
    wanted_map = sitemap_xml(parts.view_id or "00000000-0000-0000-0000-000000000000")
    if parts.sitemap_id is None:
        changes += 1
        if dry_run:
            report(f"would create site map {APP.sitemap_unique_name}")
        else:
            parts.sitemap_id = _create(
                client,
                "sitemaps",
                {"sitemapname": APP.name, "sitemapnameunique": APP.sitemap_unique_name, "sitemapxml": wanted_map},
                solution,
            )
            report(f"created  site map {APP.sitemap_unique_name}")
    elif parts.sitemap_xml != wanted_map:
        changes += 1
        if dry_run:
            report(f"would update site map {APP.sitemap_unique_name}")
        else:
            client.update("sitemaps", uuid.UUID(parts.sitemap_id), {"sitemapxml": wanted_map})
            report(f"updated  site map {APP.sitemap_unique_name}")
    else:
        report(f"exists   site map {APP.sitemap_unique_name}")
    if parts.app_id is None:
        changes += 1
        if dry_run:
            report(f"would create app '{APP.name}'")
            return changes
        parts.app_id = _create(
            client,
            "appmodules",
            {
                "name": APP.name,
                "uniquename": APP.unique_name,
                "description": APP.description,
                "webresourceid": DEFAULT_ICON,
            },
            solution,
        )
        report(f"created  app '{APP.name}'")
    else:
        report(f"exists   app '{APP.name}'")
    wanted = [
        {"@odata.type": "Microsoft.Dynamics.CRM.sitemap", "sitemapid": parts.sitemap_id},
        {"@odata.type": "Microsoft.Dynamics.CRM.savedquery", "savedqueryid": parts.view_id},
    ]
    for logical in (BRIDGE_SETTING.logical_name, ROUTING_RULE.logical_name, BRIDGE_RUN.logical_name, "phonecall"):
        table_id = _table_id(client, logical)
        if table_id is not None:
            wanted.append({"@odata.type": "Microsoft.Dynamics.CRM.entity", "entityid": table_id})
    missing = [c for c in wanted if str(next(v for k, v in c.items() if k.endswith("id"))) not in parts.components]
    if missing:
        changes += 1
        if dry_run:
            report(f"would add {len(missing)} components to app '{APP.name}'")
        else:
            client.request(
                "POST", "AddAppComponents", json={"AppId": parts.app_id, "Components": missing}, idempotent=True
            )
            report(f"added    {len(missing)} components to app '{APP.name}'")
    if dry_run:
        if changes or not parts.published:
            report(f"would validate and publish app '{APP.name}'")
        return changes
    if changes or not parts.published:
        answer = client.request("GET", f"ValidateApp(AppModuleId={parts.app_id})").json()["AppValidationResponse"]
        errors = [i["Message"] for i in answer.get("ValidationIssueList", []) if i.get("ErrorType") == "Error"]
        for issue in answer.get("ValidationIssueList", []):
            report(f"validate {issue.get('ErrorType', 'Issue').lower()}: {issue.get('Message')}")
        if errors:
            from .provision import ProvisionError

            raise ProvisionError(
                f"app '{APP.name}' did not validate: {'; '.join(errors)}",
                "open make.powerapps.com > Apps > Enreach Bridge > Edit, fix what it names, then run again",
            )
        xml = f"<importexportxml><appmodules><appmodule>{parts.app_id}</appmodule></appmodules></importexportxml>"
        client.request("POST", "PublishXml", json={"ParameterXml": xml}, idempotent=True)
        report(f"published app '{APP.name}'")
        changes += 0 if parts.published else 1
    return changes
