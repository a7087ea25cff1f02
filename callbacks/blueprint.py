"""Trigger glue of the callback package: the ``sync_callbacks`` timer. Notifications arrive at the
one Enreach notification endpoint (``presence_sync.blueprint``), which hands callback event types
to ``callbacks.notify`` first."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("sync_callbacks")
@bp.timer_trigger(schedule="%CALLBACK_SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False)
def sync_callbacks(timer: func.TimerRequest) -> None:
    """Enreach callback requests changed since the checkpoint become (or close) phonecall activities."""
    from core.settings import get_settings
    from core.telemetry import log_event, run_logged

    config = get_settings().callbacks
    if not config.polling:
        # one line, so an operator sees why nothing happens (CALLBACKS_ENABLED / CALLBACK_MODE)
        log_event("sync_callbacks", outcome="skipped", enabled=config.enabled, mode=config.mode)
        return

    from .runtime import callback_sync

    run_logged("sync_callbacks", lambda: callback_sync().poll())
