"""``python -m ops [--settings local.settings.json] provision|unprovision|doctor|probe-enreach|config``.

``config show`` prints the effective configuration; ``config import [--dry-run]`` writes the app
settings' business options and routing rules as rows (ops/config.py).

Exit codes: 0 done, 1 a runtime failure (or a doctor check failed), 2 a settings or usage problem.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bridge.settings import command_settings
from core.cli import CommandError, add_settings_argument, apply_settings_file, run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops")
    add_settings_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    provision = commands.add_parser(
        "provision", help="create the app's publisher, solution, columns, keys and tables in Dataverse"
    )
    provision.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    provision.add_argument(
        "--solution", default=None, metavar="NAME", help="unmanaged solution (default EnreachBridge)"
    )
    unprovision = commands.add_parser("unprovision", help="list what removing the app's customisation would delete")
    unprovision.add_argument("--dry-run", action="store_true", help="list only (required: removal is not automated)")
    unprovision.add_argument("--solution", default=None, metavar="NAME", help="the solution provision used")
    commands.add_parser("doctor", help="check the deployment end to end")
    config = commands.add_parser("config", help="the effective configuration (app settings and rows)")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_commands.add_parser("show", help="every setting with its source, the routing rules, rows that do not apply")
    config_import = config_commands.add_parser(
        "import", help="write the business options and ROUTING_RULES of the app settings as rows"
    )
    config_import.add_argument("--dry-run", action="store_true", help="print what would be created, change nothing")
    probe = commands.add_parser(
        "probe-enreach", help="read real Enreach records and report which mapped field names they carry"
    )
    probe.add_argument("--days", type=int, default=3, help="how many days of calls to read (1 to 31, default 3)")
    return run_command(parser, _run, argv, log_level=logging.ERROR)


def _run(args: argparse.Namespace) -> int:
    if args.command == "doctor":
        if args.settings:
            apply_settings_file(args.settings)  # a SettingsError exits 2 through run_command
        from .doctor import exit_code, run_doctor

        checks = run_doctor()
        for check in checks:
            print(check.line())
        failed = sum(not c.ok for c in checks)
        print(f"doctor: {len(checks) - failed} checks ok, {failed} with problems")
        return exit_code(checks)

    if args.command == "probe-enreach":
        return _probe(args)
    if args.command == "config":
        return _config(args)

    from dataverse import DataverseClient, credential_from_config

    from .provision import DEFAULT_SOLUTION, ProvisionError, provision, removal_plan

    settings = command_settings(args.settings)
    solution = args.solution or DEFAULT_SOLUTION
    client = DataverseClient(settings.dataverse.url, credential=credential_from_config(settings.dataverse))
    if args.command == "unprovision":
        if not args.dry_run:
            raise CommandError(
                "unprovision only lists what removal would delete (--dry-run); it deletes nothing itself",
                f"run it with --dry-run, then delete those components in make.powerapps.com > Solutions > {solution}",
                exit_code=2,
            )
        plan = removal_plan(client, solution=solution)
        for line in plan:
            print(f"would delete {line}")
        print(f"would delete {len(plan)} (with every row of the deleted tables and the values of the deleted columns)")
        return 0
    try:
        created, existing = provision(client, dry_run=args.dry_run, solution=solution)
    except ProvisionError as error:
        raise CommandError(f"provisioning stopped: {error.cause}", error.fix) from error
    verb = "would create" if args.dry_run else "created"
    print(f"{verb} {len(created)}, already there {len(existing)} (solution {solution})")
    return 0


def _config(args: argparse.Namespace) -> int:
    """show: 0, or 1 when a row does not apply; import: 0 (a settings problem exits 2 before any write)."""
    import os

    from dataverse import DataverseClient, credential_from_config

    from .config import import_rows, show

    settings = command_settings(args.settings)
    client = DataverseClient(settings.dataverse.url, credential=credential_from_config(settings.dataverse))
    if args.config_command == "show":
        return show(client, os.environ)
    created, kept = import_rows(client, os.environ, dry_run=args.dry_run)
    verb = "would create" if args.dry_run else "created"
    print(f"{verb} {created} rows, {kept} already there")
    return 0


def _probe(args: argparse.Namespace) -> int:
    """0: the mapping reads the tenant; 1: a required Enreach name is missing everywhere (the verdict
    names the ENREACH_FIELD_MAP key); Enreach errors are explained by run_command."""
    from enreach import client_from_config

    from .probe import probe_enreach

    settings = command_settings(args.settings)
    if not 1 <= args.days <= 31:
        raise CommandError(f"--days {args.days} is out of range", "give 1 to 31 days", exit_code=2)
    result = probe_enreach(
        client_from_config(settings.enreach),
        days=args.days,
        duration_limit_seconds=settings.call_sync.duration_limit_seconds,
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
