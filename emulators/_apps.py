"""Model-driven apps, site maps and system views for the Dataverse emulator (issue 19).

What provisioning uses to create the "Enreach Bridge" app, in the shapes Microsoft documents
(MicrosoftDocs/powerapps-docs):

* ``powerapps-docs/developer/model-driven-apps/create-manage-model-driven-apps-using-code.md``:
  ``POST appmodules`` (204 with ``OData-EntityId``; the new app is *unpublished*: ``GET appmodules``
  returns published apps only, ``appmodules/Microsoft.Dynamics.CRM.RetrieveUnpublishedMultiple()``
  all of them), the ``AddAppComponents`` action (``AppId``, ``Components`` with ``@odata.type`` and
  the component's id), the ``ValidateApp(AppModuleId=…)`` function answering
  ``AppValidationResponse`` (``"App does not contain Site Map"`` when it has none), and the
  ``PublishXml`` action with ``<importexportxml><appmodules><appmodule>id</appmodule>…``.
* ``powerapps-docs/developer/data-platform/reference/entities/appmodule.md``, ``sitemap.md``,
  ``appmodulecomponent.md``: the columns (``uniquename``, ``webresourceid``, ``sitemapxml``,
  ``sitemapnameunique``, ``componenttype``/``objectid``/``_appmoduleidunique_value``).
* ``powerapps-docs/developer/model-driven-apps/customize-entity-views.md``: a system view is a
  ``savedquery`` row (``returnedtypecode``, ``querytype`` 0 = public view, ``fetchxml``, ``layoutxml``).

"On creating this app, the name is automatically prefixed with your solution publisher prefix": a
``uniquename`` without the prefix of the ``MSCRM.SolutionUniqueName`` solution's publisher gets it.
Rows created with that header join the solution (componenttype 26 view, 62 site map, 80 app).
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from ._server import Request, Response, json_response

if TYPE_CHECKING:
    from .dataverse import DataverseEmulator, Table

__all__ = ["APP_COMPONENT_TYPES", "APP_SCHEMA", "handle_apps"]

_SOLUTION_COMPONENT_TYPES = {"savedqueries": 26, "sitemaps": 62, "appmodules": 80}
# appmodulecomponent.componenttype of what AddAppComponents takes: @odata.type -> (id property, type)
APP_COMPONENT_TYPES = {
    "Microsoft.Dynamics.CRM.entity": ("entityid", 1),
    "Microsoft.Dynamics.CRM.savedquery": ("savedqueryid", 26),
    "Microsoft.Dynamics.CRM.systemform": ("formid", 60),
    "Microsoft.Dynamics.CRM.sitemap": ("sitemapid", 62),
}
_BASE = {"createdon", "modifiedon", "versionnumber"}

# entity set -> (logical name, primary key, columns)
APP_SCHEMA: dict[str, tuple[str, str, set[str]]] = {
    "appmodules": (
        "appmodule",
        "appmoduleid",
        _BASE
        | {
            "name",
            "uniquename",
            "description",
            "webresourceid",
            "clienttype",
            "appmoduleidunique",
            "componentstate",
            "publishedon",
            "statecode",
            "statuscode",
        },
    ),
    "appmodulecomponents": (
        "appmodulecomponent",
        "appmodulecomponentid",
        _BASE | {"componenttype", "objectid", "_appmoduleidunique_value"},
    ),
    "sitemaps": (
        "sitemap",
        "sitemapid",
        _BASE | {"sitemapname", "sitemapnameunique", "sitemapxml", "isappaware"},
    ),
    "savedqueries": (
        "savedquery",
        "savedqueryid",
        _BASE | {"name", "description", "returnedtypecode", "querytype", "fetchxml", "layoutxml", "isdefault"},
    ),
}

_VALIDATE = re.compile(r"^ValidateApp\(AppModuleId=([0-9a-fA-F-]{36})\)$")
_UNPUBLISHED = "appmodules/Microsoft.Dynamics.CRM.RetrieveUnpublishedMultiple()"
_GUID = re.compile(r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$")


def _error(status: int, code: str, message: str) -> Response:
    return json_response(status, {"error": {"code": code, "message": message}})


def _filtered(emulator: DataverseEmulator, entity_set: str, keep: Any) -> Table:
    """A view of a table holding only the rows ``keep`` accepts (for published/unpublished reads)."""
    from .dataverse import Table

    source = emulator.table(entity_set)
    view = Table(source.entity_set, source.logical_name, source.primary_key, source.columns)
    view.rows = {k: v for k, v in source.rows.items() if keep(v)}
    return view


def handle_apps(emulator: DataverseEmulator, request: Request, resource: str) -> Response | None:
    if resource == "appmodules" and request.method == "GET":
        return emulator.query_table(_filtered(emulator, "appmodules", lambda r: r.get("componentstate") == 0), request)
    if resource == _UNPUBLISHED and request.method == "GET":
        return emulator.query_table(_filtered(emulator, "appmodules", lambda r: True), request)
    if resource in _SOLUTION_COMPONENT_TYPES and request.method == "POST":
        return _create(emulator, request, resource)
    if resource == "AddAppComponents" and request.method == "POST":
        return _add_components(emulator, request.json() or {})
    validate = _VALIDATE.match(resource)
    if validate and request.method == "GET":
        return _validate(emulator, validate.group(1).lower())
    if resource == "PublishXml" and request.method == "POST":
        return _publish(emulator, request.json() or {})
    return None


def _solution_prefix(emulator: DataverseEmulator, request: Request) -> tuple[dict[str, Any] | None, str]:
    from ._metadata import solution_row

    name = request.headers.get("mscrm.solutionuniquename")
    solution = solution_row(emulator, name) if name else None
    if solution is None:
        return None, "new"  # the Default solution's publisher
    publisher = emulator.table("publishers").rows.get(str(solution.get("_publisherid_value", "")).lower(), {})
    return solution, str(publisher.get("customizationprefix") or "new")


def _create(emulator: DataverseEmulator, request: Request, entity_set: str) -> Response:
    from ._metadata import record_component

    body = request.json()
    if not isinstance(body, dict):
        return _error(400, "0x80060888", "The request body must be a JSON object.")
    if request.headers.get("mscrm.solutionuniquename") and _solution_prefix(emulator, request)[0] is None:
        return _error(404, "0x8004a101", f"The solution {request.headers['mscrm.solutionuniquename']} does not exist.")
    solution, prefix = _solution_prefix(emulator, request)
    body = dict(body)
    if entity_set == "appmodules":
        for name in ("name", "uniquename", "webresourceid"):
            if not body.get(name):
                return _error(400, "0x80040203", f"An app needs {name} (name, uniquename and webresourceid).")
        if not str(body["uniquename"]).lower().startswith(f"{prefix}_"):
            body["uniquename"] = f"{prefix}_{body['uniquename']}"
        if any(str(r.get("uniquename", "")).lower() == body["uniquename"].lower() for r in emulator.rows(entity_set)):
            return _error(400, "0x80050111", f"An app with the unique name {body['uniquename']} already exists.")
        body.setdefault("clienttype", 4)  # Unified Interface
    if entity_set == "sitemaps":
        body.setdefault("isappaware", True)
    if entity_set == "savedqueries":
        for name in ("name", "returnedtypecode", "fetchxml", "layoutxml"):
            if not body.get(name):
                return _error(400, "0x80040203", f"A view needs {name} (name, returnedtypecode, fetchxml, layoutxml).")
        if not any(t.logical_name == body["returnedtypecode"] for t in emulator.tables.values()):
            return _error(400, "0x80040203", f"returnedtypecode {body['returnedtypecode']!r} is not a table.")
        body.setdefault("querytype", 0)
    with emulator.lock:
        response = emulator.create_row(emulator.table(entity_set), body)
        row_id = response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
        if entity_set == "appmodules":
            row = dict(emulator.table(entity_set).rows[row_id])
            row.update(appmoduleidunique=str(uuid.uuid4()), componentstate=1)  # unpublished until PublishXml
            emulator.table(entity_set).put(row_id, row)
        if solution is not None:
            record_component(emulator, solution, row_id, _SOLUTION_COMPONENT_TYPES[entity_set])
    return response


def _app(emulator: DataverseEmulator, app_id: str) -> dict[str, Any] | None:
    return emulator.table("appmodules").rows.get(app_id.lower())


def _add_components(emulator: DataverseEmulator, body: dict[str, Any]) -> Response:
    app = _app(emulator, str(body.get("AppId", "")))
    if app is None:
        return _error(404, "0x80040217", f"appmodule With Id = {body.get('AppId')} Does Not Exist")
    components = body.get("Components")
    if not isinstance(components, list) or not components:
        return _error(400, "0x80040203", "AddAppComponents needs Components: a list of entity references.")
    table = emulator.table("appmodulecomponents")
    with emulator.lock:
        for component in components:
            kind = APP_COMPONENT_TYPES.get(str((component or {}).get("@odata.type", "")))
            object_id = str((component or {}).get(kind[0], "")).lower() if kind else ""
            if kind is None or not _GUID.match(object_id):
                return _error(
                    400,
                    "0x80040203",
                    f"Each component needs an @odata.type of {', '.join(APP_COMPONENT_TYPES)} and its id.",
                )
            if kind[1] == 62 and object_id not in emulator.table("sitemaps").rows:
                return _error(404, "0x80040217", f"sitemap With Id = {object_id} Does Not Exist")
            if kind[1] == 26 and object_id not in emulator.table("savedqueries").rows:
                return _error(404, "0x80040217", f"savedquery With Id = {object_id} Does Not Exist")
            exists = any(
                r.get("objectid") == object_id and r.get("_appmoduleidunique_value") == app["appmoduleidunique"]
                for r in table.rows.values()
            )
            if not exists:
                row_id, now = str(uuid.uuid4()), emulator_now()
                table.put(
                    row_id,
                    {
                        "appmodulecomponentid": row_id,
                        "componenttype": kind[1],
                        "objectid": object_id,
                        "_appmoduleidunique_value": app["appmoduleidunique"],
                        "createdon": now,
                        "modifiedon": now,
                        "versionnumber": 1,
                    },
                )
    return Response(204, headers={"OData-Version": "4.0"})


def _issue(message: str, code: int) -> dict[str, Any]:
    empty = "00000000-0000-0000-0000-000000000000"
    return {
        "ErrorType": "Error",
        "Message": message,
        "DisplayName": None,
        "ComponentId": empty,
        "ComponentType": 0,
        "ComponentSubType": 0,
        "ParentEntityId": empty,
        "ParentEntityName": None,
        "CRMErrorCode": code,
        "RequiredComponents": [],
    }


def _validate(emulator: DataverseEmulator, app_id: str) -> Response:
    app = _app(emulator, app_id)
    if app is None:
        return _error(404, "0x80040217", f"appmodule With Id = {app_id} Does Not Exist")
    kinds = {
        r.get("componenttype")
        for r in emulator.table("appmodulecomponents").rows.values()
        if r.get("_appmoduleidunique_value") == app["appmoduleidunique"]
    }
    issues = []
    if 62 not in kinds:
        issues.append(_issue("App does not contain Site Map", -2147155684))
    return json_response(
        200,
        {
            "@odata.context": f"{emulator.url}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.ValidateAppResponse",
            "AppValidationResponse": {"ValidationSuccess": not issues, "ValidationIssueList": issues},
        },
    )


def _publish(emulator: DataverseEmulator, body: dict[str, Any]) -> Response:
    xml = str(body.get("ParameterXml", ""))
    if not xml.startswith("<importexportxml>"):
        return _error(400, "0x80040203", "PublishXml needs ParameterXml: <importexportxml>...</importexportxml>.")
    with emulator.lock:
        for app_id in re.findall(r"<appmodule>([0-9a-fA-F-]{36})</appmodule>", xml):
            app = _app(emulator, app_id)
            if app is None:
                return _error(404, "0x80040217", f"appmodule With Id = {app_id} Does Not Exist")
            emulator.touch("appmodules", app_id, componentstate=0, publishedon=emulator_now())
    return Response(204, headers={"OData-Version": "4.0"})


def emulator_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
