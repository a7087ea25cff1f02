"""Trigger glue of the routing package: the SmartRouting webhook and the phone index timer."""

from __future__ import annotations

import logging

import azure.functions as func

from core.config import schedule_binding

bp = func.Blueprint()


@bp.function_name("routing")
@bp.route(route="routing", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def routing(req: func.HttpRequest) -> func.HttpResponse:
    """Enreach SmartRouting: 200 {"InitialTarget": ...} to route, 204 to leave the call alone."""
    from bridge.settings import get_settings
    from core import metrics
    from core.telemetry import log_refusal

    from .http import handle_routing_request
    from .runtime import live_router

    settings = get_settings()
    result = handle_routing_request(
        method=req.method,
        headers=dict(req.headers),
        params=dict(req.params),
        body=req.get_body(),
        router=live_router,
        api_key=settings.routing.api_key,
        basic_user=settings.routing.basic_user,
        basic_password=settings.routing.basic_password,
    )
    if result.status >= 400:  # a decision logs its own line (routing_decision)
        log_refusal("routing", result.status, result.body)
        metrics.routing_decision("refused", None)
    return func.HttpResponse(
        body=result.body or None,
        status_code=result.status,
        mimetype=result.content_type,
        headers=dict(result.headers or {}),
    )


@bp.function_name("warmup")
@bp.warm_up_trigger(arg_name="context")
def warmup(context: func.warmup.WarmUpContext) -> None:
    """A new instance (scale-out on Premium) gets ready before traffic: router built, token fetched.

    (`func.WarmUpContext` is in azure-functions' __all__ but not imported there, hence `func.warmup`.)
    """
    from .runtime import warm_up

    warm_up()


@bp.function_name("sync_phone_index")
@bp.timer_trigger(
    schedule=schedule_binding("PHONE_INDEX_SCHEDULE", "0 */5 * * * *"), arg_name="timer", run_on_startup=False
)
def sync_phone_index(timer: func.TimerRequest) -> None:
    """Keep the E.164 phone index of contacts, accounts and leads current."""
    from bridge.rows import run_status
    from bridge.settings import get_settings
    from core.telemetry import run_logged

    from .index_sync import sync_phone_index as run
    from .runtime import checkpoint_store, dataverse_client

    settings = get_settings()
    if timer.past_due:
        logging.getLogger("routing.index").info("sync_phone_index is running late (past due)")
    run_logged(
        "sync_phone_index",
        lambda: run(
            dataverse_client(),
            checkpoint_store(),
            phone_columns=settings.matching.phone_columns,
            region=settings.matching.region,
        ),
        status=run_status(),
    )
