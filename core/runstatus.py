"""Run status in Dynamics: every timer run upserts its job's ``enr_bridgerun`` row (issue 19).

``core.telemetry.run_logged(name, run, status=sink)`` hands each finished run to a sink; the sink
built here turns it into one row (``status_row``) and writes it with one PATCH by the job's alternate
key (``enr_job``): created on the first run, overwritten by every later one. The row shows the last run:
start, end, outcome (ok / partial / failed), the counts the run's log line carries (read, created,
parked, waiting, for review, failed), the checkpoint and its lag, the oldest parked call, and the
run's problem as one line with its cause and fix (empty after a clean run).

Parked calls are shown as a count (``enr_waiting``) and the oldest one's park time
(``enr_oldestparked``) on the call sync's row, not mirrored one row each: they live in Table
Storage with their retry state, and mirroring them would cost writes per parked call per run and a
second copy to keep true; the one status row costs nothing beyond the run's one request.
``python -m call_sync status`` lists them one by one.

Nothing here imports a job package or the Dataverse client: the writer takes an ``upsert``
callable (``DataverseClient.upsert`` fits). A failed status write never fails the run: it is logged
(one ``run_status_failed`` line) and the next run writes again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .masking import mask_sensitive
from .schema import BRIDGE_RUN

__all__ = ["FinishedRun", "RunStatusWriter", "status_row"]

log = logging.getLogger("bridge.runstatus")

# report attribute -> enr_bridgerun column (what a run's one log line carries)
_COUNTS = {
    "read": "enr_read",
    "created": "enr_created",
    "parked": "enr_parked",
    "waiting": "enr_waiting",
    "for_review": "enr_forreview",
    "failed": "enr_failed",
}
_PROBLEM_LENGTH = 2000
_SUMMARY_LENGTH = 4000


@dataclass(frozen=True)
class FinishedRun:
    """One timer run as the telemetry wrapper saw it."""

    job: str
    started: datetime
    finished: datetime
    outcome: str  # ok / partial / failed
    duration_ms: float
    report: Any = None
    error: BaseException | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _problem(run: FinishedRun) -> str | None:
    """The run's problem in one line: cause, and fix when the error or report gives one."""
    if run.error is not None:
        cause = getattr(run.error, "cause", None) or f"{type(run.error).__name__}: {run.error}"
        fix = getattr(run.error, "fix", None)
        text = f"{cause}; fix: {fix}" if fix else str(cause)
    else:
        problems = getattr(run.report, "problems", None) or getattr(run.report, "details", None)
        stopped = getattr(run.report, "stopped", None)
        if problems and isinstance(problems, list):
            text = str(problems[-1])
        elif stopped:
            text = str(stopped)
        elif run.outcome != "ok":
            text = "some items failed and are retried by the next run; see the summary and the run's log line"
        else:
            return None
    return mask_sensitive(" ".join(text.split()))[:_PROBLEM_LENGTH]  # a vendor's answer may hold numbers


def status_row(run: FinishedRun) -> dict[str, Any]:
    """The ``enr_bridgerun`` columns for one run (the job name is the key, not a column here)."""
    report = run.report
    row: dict[str, Any] = {
        "enr_started": _iso(run.started),
        "enr_finished": _iso(run.finished),
        "enr_outcome": BRIDGE_RUN.column("enr_outcome").option_value(
            run.outcome if run.outcome in ("ok", "partial", "failed") else "partial"
        ),
        "enr_durationms": round(run.duration_ms),
        "enr_problem": _problem(run),
    }
    for attribute, column in _COUNTS.items():
        value = getattr(report, attribute, None)
        row[column] = value if isinstance(value, int) and not isinstance(value, bool) else None
    checkpoint = _parse(getattr(report, "checkpoint", None))
    row["enr_checkpoint"] = _iso(checkpoint) if checkpoint else None
    row["enr_lagminutes"] = max(0, round((run.finished - checkpoint).total_seconds() / 60)) if checkpoint else None
    oldest = _parse(getattr(report, "oldest_parked", None))
    row["enr_oldestparked"] = _iso(oldest) if oldest else None
    summary = getattr(report, "summary", None)
    text = summary() if callable(summary) else None
    row["enr_summary"] = str(text)[:_SUMMARY_LENGTH] if text else None
    return row


class RunStatusWriter:
    """A run sink for ``run_logged``: one upsert of the job's row per run; never raises."""

    def __init__(self, upsert: Callable[[str, Mapping[str, Any], Mapping[str, Any]], Any]) -> None:
        self._upsert = upsert

    def __call__(self, run: FinishedRun) -> None:
        try:
            self._upsert(BRIDGE_RUN.entity_set, {BRIDGE_RUN.name_column: run.job}, status_row(run))
        except Exception as error:  # the run's work is done; its status row waits for the next run
            from .telemetry import log_event

            log_event(
                "run_status_failed",
                level=logging.WARNING,
                job=run.job,
                error=f"{type(error).__name__}: {str(error)[:200]}",
                fix="run python -m ops provision (creates enr_bridgerun) and check the app user's privileges",
            )
