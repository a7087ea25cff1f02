"""``python -m ops provision [--dry-run]`` and ``python -m ops doctor [--settings local.settings.json]``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def _settings_file(path: str) -> None:
    """Put local.settings.json's Values into the environment (without overriding what is set)."""
    with open(path, encoding="utf-8") as handle:
        values = json.load(handle).get("Values", {})
    for name, value in values.items():
        if isinstance(value, str) and value and name not in os.environ:
            os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops")
    parser.add_argument("--settings", help="read app settings from this local.settings.json first")
    commands = parser.add_subparsers(dest="command", required=True)
    provision = commands.add_parser("provision", help="create the app's columns, keys and tables in Dataverse")
    provision.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    commands.add_parser("doctor", help="check the deployment end to end")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.settings:
        _settings_file(args.settings)

    if args.command == "doctor":
        from .doctor import run_doctor

        checks = run_doctor()
        for check in checks:
            print(check.line())
        failed = sum(not c.ok for c in checks)
        print(f"doctor: {len(checks) - failed} checks ok, {failed} with problems")
        return 1 if failed else 0

    from core.settings import SettingsError, load_settings
    from dataverse import DataverseClient, DataverseError, credential_from_settings

    try:
        settings = load_settings()
    except SettingsError as error:
        print(error, file=sys.stderr)
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
