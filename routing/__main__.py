"""``python -m routing explain +358... [--bnum +358...] [--queue <id>]`` and ``python -m routing index [--full]``.

Runs against the Dataverse configured in the environment (the app settings), so an admin
can see why a caller is, or is not, routed without placing a call.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from core.cli import add_settings_argument, cli_settings


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = cli_settings(args.settings)
    if settings is None:
        return 2
    from .runtime import checkpoint_store, dataverse_client, router

    if args.command == "explain":
        decision = router().route(args.anum, args.bnum, queue_id=args.queue)
        print(json.dumps(decision.explain(), indent=2, ensure_ascii=False))
        router().close()
        return 0
    from .index_sync import sync_phone_index

    report = sync_phone_index(
        dataverse_client(),
        checkpoint_store(),
        phone_columns=settings.routing_phone_columns,
        region=settings.phone_default_region,
        full=args.full,
    )
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
