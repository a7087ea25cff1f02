"""Trigger glue of the call sync package: two timers, run by hand via POST /admin/functions/<name>."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("sync_phone_calls")
@bp.timer_trigger(schedule="%PHONE_CALL_SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False)
def sync_phone_calls(timer: func.TimerRequest) -> None:
    """Enreach Work calls since the checkpoint become completed phonecall activities."""
    from core.settings import get_settings
    from core.telemetry import run_logged

    from .calls import sync_phone_calls as run
    from .runtime import (
        call_lookup,
        checkpoint_store,
        dataverse_client,
        enreach_client,
        options,
        parking_store,
        transcript_store,
    )

    run_logged(
        "sync_phone_calls",
        lambda: run(
            enreach_client(),
            dataverse_client(),
            checkpoint_store(),
            call_lookup(),
            options(get_settings()),
            parking=parking_store(),
            transcripts=transcript_store(),
        ),
    )


@bp.function_name("sync_enreach_user_ids")
@bp.timer_trigger(schedule="%USER_ID_SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False)
def sync_enreach_user_ids(timer: func.TimerRequest) -> None:
    """Write each Dataverse user's Enreach user id (matched by e-mail)."""
    from core.settings import get_settings
    from core.telemetry import run_logged

    from .runtime import dataverse_client, enreach_client
    from .users import sync_enreach_user_ids as run

    run_logged(
        "sync_enreach_user_ids",
        lambda: run(enreach_client(), dataverse_client(), batch_size=get_settings().call_sync_batch_size),
    )
