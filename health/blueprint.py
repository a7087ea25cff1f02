"""Trigger glue for the health probe (Azure types stay here)."""

from __future__ import annotations

import json

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when every setting is present and well-formed, else 503 (details: the doctor command).

    It calls no downstream service, so an App Service health check can poll it cheaply.
    Anonymous on purpose: it tells only a count, never a setting's value or name.
    """
    from bridge.settings import SettingsError, get_settings

    try:
        get_settings()
    except SettingsError as error:
        body = {"status": "misconfigured", "problems": len(error.problems), "hint": "see the Function App's logs"}
        return func.HttpResponse(json.dumps(body), status_code=503, mimetype="application/json")
    return func.HttpResponse(json.dumps({"status": "ok"}), status_code=200, mimetype="application/json")
