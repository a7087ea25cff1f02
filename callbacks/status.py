"""``python -m callbacks status``: where the callback sync stands (Table Storage and Dataverse)."""

from __future__ import annotations

from datetime import UTC, datetime

from call_sync.status import ago
from core.schema import CALLBACKS
from core.state import CheckpointStore
from dataverse import DataverseClient
from dataverse import filters as f

from .sync import CHECKPOINT_NAME

__all__ = ["status_lines"]


def status_lines(
    store: CheckpointStore, client: DataverseClient | None, *, enabled: bool, mode: str, now: datetime | None = None
) -> list[str]:
    now = now or datetime.now(UTC)
    lines = [f"callbacks: {'on' if enabled else 'off (not in BRIDGE_JOBS)'}, mode {mode}"]
    value = store.read(CHECKPOINT_NAME).value
    if value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        lines.append(f"checkpoint: {value} ({ago(max(0.0, (now - moment).total_seconds()))} behind now)")
    else:
        lines.append("checkpoint: none yet (the first run reads CALLBACK_INITIAL_LOOKBACK_HOURS back)")
    last = store.last_run(CHECKPOINT_NAME)
    if last is None:
        lines.append("last run: none recorded")
    else:
        lines.append(f"last run: {last.finished} {last.outcome}: {last.summary}")
        failed = last.counts.get("failed", 0) + last.counts.get("throttled", 0)
        if failed:
            lines.append(f"failures in the last run: {failed} requests (retried by the next run)")
    if client is not None:
        key = CALLBACKS.request_id_column
        open_rows = list(
            client.query(
                "phonecalls",
                select=["activityid", "scheduledend"],
                filter=f.and_(f.ne(key, None), f.eq("statecode", 0)),
            )
        )
        overdue = sum(
            1
            for r in open_rows
            if r.get("scheduledend") and str(r["scheduledend"]) < now.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        unmirrored = list(
            client.query(
                "phonecalls",
                select=["activityid"],
                filter=f.and_(f.ne(key, None), f.eq(CALLBACKS.state_column, "dynamics")),
            )
        )
        lines.append(
            f"open callback activities: {len(open_rows)} ({overdue} past their expiry, closed by the next run)"
        )
        if unmirrored:
            lines.append(
                f"closed in Dynamics, still open in Enreach: {len(unmirrored)} (CALLBACK_CLOSE_IN_ENREACH is off)"
            )
    return lines
