"""``python -m call_sync status``: where the phone call sync stands, from Table Storage alone."""

from __future__ import annotations

from datetime import UTC, datetime

from core.state import CheckpointStore

from .calls import CHECKPOINT_NAME
from .parking import EXPIRED_KEPT_DAYS, ParkedCalls

__all__ = ["ago", "status_lines"]

SHOWN = 20


def ago(delta_seconds: float) -> str:
    """An age in minutes, hours or days, as the status commands print it."""
    minutes = int(delta_seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


def status_lines(store: CheckpointStore, parking: ParkedCalls, *, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    lines = []
    value = store.read(CHECKPOINT_NAME).value
    if value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        lines.append(f"checkpoint: {value} ({ago((now - moment).total_seconds())} behind now)")
    else:
        lines.append("checkpoint: none yet (the first run reads CALL_SYNC_INITIAL_LOOKBACK_HOURS back)")
    last = store.last_run(CHECKPOINT_NAME)
    if last is None:
        lines.append("last run: none recorded")
    else:
        lines.append(f"last run: {last.finished} {last.outcome}: {last.summary}")
    parked = parking.all()
    waiting = sorted((p for p in parked if p.expired_at is None), key=lambda p: p.parked_at)
    expired = sorted((p for p in parked if p.expired_at is not None), key=lambda p: p.call.start)
    oldest = f" (oldest parked {waiting[0].parked_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)" if waiting else ""
    lines.append(f"parked calls: {len(waiting)} waiting{oldest}, {len(expired)} expired")
    if expired:
        lines.append(
            "expired calls (their Enreach user had no Dataverse user within CALL_SYNC_PARK_DAYS; set the user's "
            "Enreach e-mail or DEFAULT_CRM_ASSIGNEE, then run backfill for their days; listed "
            f"{EXPIRED_KEPT_DAYS} days):"
        )
        for item in expired[:SHOWN]:
            lines.append(
                f"  {item.call.call_id} of Enreach user {item.call.user_id}, "
                f"started {item.call.start.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            )
        if len(expired) > SHOWN:
            lines.append(f"  ... and {len(expired) - SHOWN} more")
    return lines
