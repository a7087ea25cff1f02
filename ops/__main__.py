"""``python -m ops provision [--dry-run]``, ``python -m ops doctor`` and ``python -m ops probe-enreach [--days 3]``
(each takes ``--settings local.settings.json``). Exit codes: 0 ok, 1 a problem found, 2 settings."""

from __future__ import annotations

import argparse
import logging
import sys

from core.cli import add_settings_argument, apply_settings_file, cli_settings
from core.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops")
    add_settings_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    provision = commands.add_parser("provision", help="create the app's columns, keys and tables in Dataverse")
    provision.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    commands.add_parser("doctor", help="check the deployment end to end")
    probe = commands.add_parser(
        "probe-enreach", help="read real Enreach records and report which mapped field names they carry"
    )
    probe.add_argument("--days", type=int, default=3, help="how many days of calls to read (default 3)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.command == "doctor" and args.settings:
        try:
            apply_settings_file(args.settings)
        except SettingsError as error:
            print(error, file=sys.stderr)
            return 2

    if args.command == "doctor":
        from .doctor import run_doctor

        checks = run_doctor()
        for check in checks:
            print(check.line())
        failed = sum(not c.ok for c in checks)
        print(f"doctor: {len(checks) - failed} checks ok, {failed} with problems")
        return 1 if failed else 0

    if args.command == "probe-enreach":
        return _probe(args.settings, args.days)

    from dataverse import DataverseClient, DataverseError, credential_from_settings

    settings = cli_settings(args.settings)
    if settings is None:
        return 2
    from .provision import provision as run

    client = DataverseClient(settings.dataverse_url, credential=credential_from_settings(settings))
    try:
        created, existing = run(client, dry_run=args.dry_run)
    except DataverseError as error:
        print(f"provisioning stopped: {error}", file=sys.stderr)
        return 1
    verb = "would create" if args.dry_run else "created"
    print(f"{verb} {len(created)}, already there {len(existing)}")
    return 0


def _probe(settings_file: str | None, days: int) -> int:
    from enreach import EnreachError, client_from_settings

    from .probe import probe_enreach

    settings = cli_settings(settings_file)
    if settings is None:
        return 2
    if not 1 <= days <= 31:
        print("probe-enreach: --days must be from 1 to 31", file=sys.stderr)
        return 2
    try:
        result = probe_enreach(
            client_from_settings(settings), days=days, duration_limit_seconds=settings.call_duration_limit_seconds
        )
    except EnreachError as error:
        print(f"probe-enreach: {error}", file=sys.stderr)
        return 1
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
