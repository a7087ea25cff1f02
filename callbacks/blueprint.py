"""Trigger glue of the callback package: the ``sync_callbacks`` timer, and the Enreach notification
endpoint for a deployment without the presence job (with it, ``presence_enreach`` hands callback
event types to ``callbacks.notify`` first)."""

from __future__ import annotations

import azure.functions as func

from core.config import schedule_binding

from .config import DEFAULT_SCHEDULE

bp = func.Blueprint()
notifications_bp = func.Blueprint()


@bp.function_name("sync_callbacks")
@bp.timer_trigger(
    schedule=schedule_binding("CALLBACK_SYNC_SCHEDULE", DEFAULT_SCHEDULE), arg_name="timer", run_on_startup=False
)
def sync_callbacks(timer: func.TimerRequest) -> None:
    """Enreach callback requests changed since the checkpoint become (or close) phonecall activities."""
    from bridge.settings import get_settings
    from core.telemetry import log_event, run_logged

    section = get_settings().callbacks
    if not section.polling:
        log_event("sync_callbacks", outcome="skipped", mode=section.mode)  # CALLBACK_MODE=notify
        return

    from bridge.rows import run_status

    from .runtime import callback_sync

    run_logged("sync_callbacks", lambda: callback_sync().poll(), status=run_status())


@notifications_bp.function_name("callback_notifications")
@notifications_bp.route(route="presence/enreach", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def callback_notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Enreach callback notifications where the presence job is off (BRIDGE_JOBS without presence)."""
    from core.telemetry import log_refusal

    from .notify import not_a_callback
    from .runtime import dispatch_notification

    body = req.get_body()
    answer = dispatch_notification(dict(req.headers), body) or not_a_callback(dict(req.headers), body)
    status, payload, headers = answer
    if status >= 400:
        log_refusal("callback_notifications", status, payload)
    return func.HttpResponse(body=payload, status_code=status, mimetype="application/json", headers=headers)
