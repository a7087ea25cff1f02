"""``python -m ops provision [--dry-run]`` and ``python -m ops doctor [--settings local.settings.json]``."""

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


if __name__ == "__main__":
    sys.exit(main())
