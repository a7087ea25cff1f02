"""``python -m routing explain +358... [--bnum +358...] [--queue <id>]`` and ``python -m routing index [--full]``.

Runs against the Dataverse configured in the environment (the app settings), so an admin
can see why a caller is, or is not, routed without placing a call.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from bridge.settings import command_settings
from core.cli import CommandError, add_settings_argument, run_command

# Reasons of a decision the router could not make (routing/service.py): the lookup failed or ran out of time.
_UNDECIDED = ("lookup failed", "Dataverse did not answer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m routing")
    add_settings_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="show the routing decision for a caller as JSON")
    explain.add_argument("anum", help="the caller's number")
    explain.add_argument("--bnum", default="", help="the pool number the call is in (pools, the loop check)")
    explain.add_argument("--queue", default=None, help="the Enreach queue id (extradata.CurrQueueId)")
    index = commands.add_parser("index", help="run sync_phone_index once")
    index.add_argument("--full", action="store_true", help="rescan every record, not only changed ones")
    return run_command(parser, _run, argv)


def _run(args: argparse.Namespace) -> int:
    settings = command_settings(args.settings)
    from bridge.rows import config_rows

    from .runtime import checkpoint_store, dataverse_client, router

    if args.command == "explain":
        router()
        # the rule rows the webhook uses; unreadable, the app setting's rules apply and the decision
        # (or the command's failure) names what is wrong, so the read's own warning is not repeated
        logging.getLogger("bridge.config").setLevel(logging.ERROR)
        config_rows().refresh_now()
        decision = router().route(args.anum, args.bnum, queue_id=args.queue)
        router().close()
        print(json.dumps(decision.explain(), indent=2, ensure_ascii=False))
        if decision.caller is None:
            raise CommandError(
                f"{args.anum!r} is not a phone number: {decision.reason}",
                "give the caller's number, e.g. +358501234567 (local forms use PHONE_DEFAULT_REGION)",
                exit_code=2,
            )
        if decision.reason.startswith(_UNDECIDED):
            dataverse_client().whoami()  # the same failure again, as a typed error the wrapper explains
            raise CommandError(
                f"could not decide: {decision.reason}",
                "run python -m ops doctor; ROUTING_TIME_BUDGET_SECONDS bounds the lookup",
            )
        return 0
    from .index_sync import sync_phone_index

    report = sync_phone_index(
        dataverse_client(),
        checkpoint_store(),
        phone_columns=settings.matching.phone_columns,
        region=settings.matching.region,
        full=args.full,
    )
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
