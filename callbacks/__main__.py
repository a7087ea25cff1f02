"""``python -m callbacks status`` and ``python -m callbacks sync``.

Status shows whether the job is on and its mode, the checkpoint and its lag, the last run's
outcome and failures, the open callback activities (and how many are past their expiry), and the
requests closed in Dynamics that stay open in Enreach. ``sync`` runs ``sync_callbacks`` once, as
the timer would (also while the job is off: for trying it out). Exit codes: 0 done, 1 something
failed (the summary says what), 2 settings or usage.
"""

from __future__ import annotations

import argparse
import sys

from bridge.settings import command_settings
from core.cli import add_settings_argument, run_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callbacks")
    add_settings_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="on/off and mode, checkpoint, lag, last run, open requests, failures")
    commands.add_parser("sync", help="run sync_callbacks once")
    return run_command(parser, lambda args: _run(args), argv)


def _run(args: argparse.Namespace) -> int:
    settings = command_settings(args.settings)
    from bridge.runtime import checkpoint_store, dataverse_client

    if args.command == "status":
        from azure.core.exceptions import AzureError

        from .status import status_lines

        try:
            lines = status_lines(
                checkpoint_store(),
                dataverse_client(),
                enabled="callbacks" in settings.jobs,
                mode=settings.callbacks.mode if settings.has("callbacks") else "-",
            )
        except (AzureError, ValueError) as error:
            print(
                f"cannot read the callback sync's state in Table Storage: {error.__class__.__name__}; "
                "check AzureWebJobsStorage",
                file=sys.stderr,
            )
            return 1
        print("\n".join(lines))
        return 0

    from .runtime import callback_sync

    report = callback_sync().poll()
    print(report.summary())
    return 1 if report.outcome != "ok" else 0


if __name__ == "__main__":
    sys.exit(main())
