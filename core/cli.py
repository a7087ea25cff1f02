"""What every command-line entry point (``python -m routing|call_sync|ops``) shares: reading
the app settings from the environment or from a ``local.settings.json``, and saying clearly
when they are wrong."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .settings import Settings, SettingsError, load_settings

__all__ = ["add_settings_argument", "apply_settings_file", "cli_settings"]


def add_settings_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--settings",
        metavar="FILE",
        help="read app settings from this local.settings.json first (what the environment sets wins)",
    )


def apply_settings_file(path: str) -> None:
    """Put a local.settings.json's ``Values`` into the environment, without overriding what is set."""
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle).get("Values", {})
    except (OSError, ValueError, AttributeError) as error:
        raise SettingsError([f"--settings {path}: not a readable local.settings.json ({error})"]) from None
    for name, value in values.items():
        if isinstance(value, str) and value and name not in os.environ:
            os.environ[name] = value


def cli_settings(path: str | None) -> Settings | None:
    """The settings for a command, or None after printing every problem to stderr."""
    try:
        if path:
            apply_settings_file(path)
        return load_settings()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return None
