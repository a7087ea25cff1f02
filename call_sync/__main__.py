"""``python -m call_sync backfill --from 2026-11-01 --to 2026-11-20 [--dry-run]``, ``python -m call_sync users``
and ``python -m call_sync status``.

Backfill re-syncs the calls that started in a date range (UTC days, ``--to`` inclusive)
against the configured environment, with a progress bar and a summary. It is safe to run
over calls that are already in Dataverse: they count as already synced. The timer's
checkpoint is not touched; calls whose user has no Dataverse user are parked for the timer.
Status shows the checkpoint and its lag, the last timer run's outcome and the parked calls.
Exit codes: 0 done, 1 something failed (the summary says what), 2 settings or usage.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, time, timedelta

from bridge.settings import command_settings
from core.cli import add_settings_argument, run_command


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-01") from None


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def __call__(self, count: int) -> None:
        self.done += count
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} calls")
        sys.stderr.flush()
        if self.done >= self.total:
            sys.stderr.write("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m call_sync")
    add_settings_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    backfill = commands.add_parser("backfill", help="re-sync the calls that started in a date range")
    backfill.add_argument("--from", dest="start", type=_day, required=True, help="first day (UTC), e.g. 2026-11-01")
    backfill.add_argument("--to", dest="end", type=_day, required=True, help="last day (UTC), inclusive")
    backfill.add_argument("--dry-run", action="store_true", help="count what would be written, write nothing")
    commands.add_parser("users", help="run the Enreach user id sync once")
    commands.add_parser("status", help="checkpoint, lag, last run's outcome, parked and expired calls")
    return run_command(parser, lambda args: _run(parser, args), argv)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    settings = command_settings(args.settings)
    from .runtime import (
        call_lookup,
        checkpoint_store,
        dataverse_client,
        enreach_client,
        options,
        parking_store,
        transcript_store,
    )

    if args.command == "status":
        from azure.core.exceptions import AzureError

        from .status import status_lines

        try:
            lines = status_lines(checkpoint_store(), parking_store())
        except (AzureError, ValueError) as error:
            print(
                f"cannot read the call sync's state in Table Storage: {error.__class__.__name__}; "
                "check AzureWebJobsStorage",
                file=sys.stderr,
            )
            return 1
        print("\n".join(lines))
        return 0

    if args.command == "users":
        from .users import sync_enreach_user_ids

        user_report = sync_enreach_user_ids(
            enreach_client(), dataverse_client(), batch_size=settings.call_sync.batch_size
        )
        print(user_report.summary())
        return 1 if user_report.failed else 0

    if args.end < args.start:
        parser.error("--to is before --from")
    from .calls import CallSyncReport, UserDirectory, settle_parking, sync_calls

    start = datetime.combine(args.start, time.min, tzinfo=UTC)
    end = datetime.combine(args.end + timedelta(days=1), time.min, tzinfo=UTC)
    enreach = enreach_client()
    report = CallSyncReport(window=(start.isoformat(), end.isoformat()))
    run_options = options(settings, dry_run=args.dry_run)
    # nothing is written before these reads: a failure is explained by run_command (cause + fix)
    everyone = enreach.users()  # calls are asked for per user (UserIDs), see enreach.EnreachClient.calls
    calls = enreach.calls(start, end, by="start", users=everyone)
    users = UserDirectory.load(dataverse_client(), settings.matching.region)
    parking = None if args.dry_run else parking_store()
    parked = {p.key: p for p in parking.all()} if parking else {}
    progress = _Progress(len(calls))
    result = sync_calls(
        calls,
        client=dataverse_client(),
        lookup=call_lookup(),
        users=users,
        enreach_users={u.id.lower(): u for u in everyone},
        options=run_options,
        report=report,
        on_progress=progress,
        enreach=enreach,
        pending=None if args.dry_run else transcript_store(),
    )
    if progress.done < progress.total:
        progress(progress.total - progress.done)  # skipped calls count as done
    if parking is not None:
        settle_parking(parking, parked, result, report, run_options, datetime.now(UTC))
    print(("DRY RUN (nothing written): " if args.dry_run else "") + report.summary().replace("; checkpoint none", ""))
    if report.failed or report.throttled:
        print("some calls were not written: run the same backfill again (calls already synced are skipped)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
