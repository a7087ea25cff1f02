"""Trigger glue of the presence package: the Dataverse and Enreach webhooks, the reconciliation
and polling timers."""

from __future__ import annotations

import azure.functions as func

from core.config import schedule_binding

bp = func.Blueprint()


def _response(function: str, result: tuple[int, bytes, dict[str, str]]) -> func.HttpResponse:
    status, body, headers = result
    if status >= 400:  # an applied decision logs its own line (presence_change)
        from core import metrics
        from core.telemetry import log_refusal

        log_refusal(function, status, body)
        metrics.presence_refused(status)
    return func.HttpResponse(body=body, status_code=status, mimetype="application/json", headers=headers)


@bp.function_name("presence_dataverse")
@bp.route(route="presence/dataverse", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def presence_dataverse(req: func.HttpRequest) -> func.HttpResponse:
    """Omnichannel presence changed (Dataverse webhook on msdyn_agentstatus): mirror it to Enreach."""
    from bridge.settings import get_settings

    from .http import handle_dataverse_webhook
    from .runtime import live_presence_sync

    return _response(
        "presence_dataverse",
        handle_dataverse_webhook(
            headers=dict(req.headers),
            params=dict(req.params),
            body=req.get_body(),
            key=get_settings().presence.webhook_key,
            sync=live_presence_sync,
        ),
    )


@bp.function_name("presence_enreach")
@bp.route(route="presence/enreach", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def presence_enreach(req: func.HttpRequest) -> func.HttpResponse:
    """Enreach availability or call notification: mirror to Omnichannel, DND during calls."""
    from bridge.settings import get_settings
    from callbacks.runtime import dispatch_notification

    from .http import handle_enreach_webhook
    from .runtime import live_presence_sync

    settings = get_settings()
    # callback event types go to the callbacks job first (callbacks/runtime.py, callbacks/notify.py)
    callback_answer = dispatch_notification(dict(req.headers), req.get_body())
    if callback_answer is not None:
        return _response("presence_enreach", callback_answer)
    return _response(
        "presence_enreach",
        handle_enreach_webhook(
            headers=dict(req.headers),
            body=req.get_body(),
            api_key=settings.routing.api_key,
            basic_user=settings.routing.basic_user,
            basic_password=settings.routing.basic_password,
            sync=live_presence_sync,
            secret=settings.enreach.webhook_secret,
            secret_header=settings.enreach.webhook_secret_header,
            events=settings.enreach.mapping.events,
        ),
    )


@bp.function_name("reconcile_presence")
@bp.timer_trigger(
    schedule=schedule_binding("PRESENCE_RECONCILE_SCHEDULE", "0 */5 * * * *"), arg_name="timer", run_on_startup=False
)
def reconcile_presence(timer: func.TimerRequest) -> None:
    """Expire lost calls, finish owed writes, mirror availability changes no notification brought."""
    from bridge.rows import config_rows, run_status
    from core.telemetry import run_logged

    from .runtime import presence_sync

    def run() -> object:
        sync = presence_sync()
        config_rows().refresh_if_due()  # the setting rows at the start of the run
        return sync.reconcile()

    run_logged("reconcile_presence", run, status=run_status(), log=False)


@bp.function_name("sync_presence")
@bp.timer_trigger(
    schedule=schedule_binding("PRESENCE_POLL_SCHEDULE", "0 */2 * * * *"), arg_name="timer", run_on_startup=False
)
def sync_presence(timer: func.TimerRequest) -> None:
    """Polling fallback: mapped agents' Enreach availability mirrored to Omnichannel (PRESENCE_POLLING)."""
    from bridge.rows import run_status
    from core.telemetry import run_logged

    from .runtime import run_polling

    run_logged("sync_presence", run_polling, status=run_status(), log=False)
