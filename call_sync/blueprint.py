"""Trigger glue of the call sync package: two timers, run by hand via POST /admin/functions/<name>.

``bp`` is the call sync job (``sync_phone_calls``), ``users_bp`` the user id sync job
(``sync_enreach_user_ids``); ``BRIDGE_JOBS`` registers each on its own."""

from __future__ import annotations

import azure.functions as func

from core.config import schedule_binding

bp = func.Blueprint()


@bp.function_name("sync_phone_calls")
@bp.timer_trigger(
    schedule=schedule_binding("PHONE_CALL_SYNC_SCHEDULE", "0 */5 * * * *"), arg_name="timer", run_on_startup=False
)
def sync_phone_calls(timer: func.TimerRequest) -> None:
    """Enreach Work calls since the checkpoint become completed phonecall activities."""
    from core.telemetry import run_logged

    from .calls import sync_phone_calls as run
    from .runtime import (
        call_lookup,
        checkpoint_store,
        dataverse_client,
        effective_settings,
        enreach_client,
        options,
        parking_store,
        run_status,
        transcript_store,
    )

    run_logged(
        "sync_phone_calls",
        lambda: run(
            enreach_client(),
            dataverse_client(),
            checkpoint_store(),
            call_lookup(),
            options(effective_settings()),  # with the setting rows read at the start of the run
            parking=parking_store(),
            transcripts=transcript_store(),
        ),
        status=run_status(),
    )


users_bp = func.Blueprint()  # the user id sync: its own job in BRIDGE_JOBS (user_ids)


@users_bp.function_name("sync_enreach_user_ids")
@users_bp.timer_trigger(
    schedule=schedule_binding("USER_ID_SYNC_SCHEDULE", "0 0 * * * *"), arg_name="timer", run_on_startup=False
)
def sync_enreach_user_ids(timer: func.TimerRequest) -> None:
    """Write each Dataverse user's Enreach user id (matched by e-mail)."""
    from bridge.settings import get_settings
    from core.telemetry import run_logged

    from .runtime import dataverse_client, enreach_client, run_status
    from .users import sync_enreach_user_ids as run

    run_logged(
        "sync_enreach_user_ids",
        lambda: run(enreach_client(), dataverse_client(), batch_size=get_settings().user_ids.batch_size),
        status=run_status(),
    )
