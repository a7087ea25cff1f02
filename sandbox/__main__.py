"""``python -m sandbox``: the whole app on this machine, against the built-in emulators.

Starts the token service, the Dataverse emulator (default port 7072, under
/api/data/v9.2/), the Enreach emulator (7073), Azurite (Table storage), and a
local Functions host on 7071 serving the app's HTTP functions at /api/<route>
and POST /admin/functions/<name> for timers; timers also fire on their schedules
(``--no-timers`` turns that off). Settings set in the environment win. The settings
pointing at it are written to ``sandbox.settings.json``, which every ``python -m ...``
command takes with ``--settings``.

``python -m sandbox rows <entity set> [--filter ...]`` lists a running sandbox's Dataverse rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from bridge.settings import SettingsError, load_settings

from .services import ROOT, Services, load_data, shift_call_times

SETTINGS_FILE = ROOT / "sandbox.settings.json"


def write_settings_file(path: Path, values: dict[str, str]) -> None:
    """A local.settings.json for the running sandbox (owner-only: it holds the sandbox's keys)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"IsEncrypted": False, "Values": values}, indent=2) + "\n")
    path.chmod(0o600)  # also when the file was there already


def rows(argv: list[str]) -> int:
    """``python -m sandbox rows <entity set>``: the emulator's rows through the Web API, as JSON lines."""
    from bridge.settings import command_settings
    from core.cli import add_settings_argument, run_command

    parser = argparse.ArgumentParser(prog="python -m sandbox rows", description="list a running sandbox's rows")
    add_settings_argument(parser)
    parser.add_argument("entity_set", help="e.g. contacts, phonecalls, enr_phoneindexes")
    parser.add_argument("--filter", help="an OData $filter, e.g. \"fullname eq 'Liisa Nieminen'\"")
    parser.add_argument("--select", help="comma-separated columns (default: all)")
    parser.add_argument("--top", type=int, default=50, help="at most this many rows (default 50)")
    parser.set_defaults(settings=str(SETTINGS_FILE))

    def body(args: argparse.Namespace) -> int:
        if not Path(args.settings).exists():
            from core.cli import CommandError

            raise CommandError(
                f"{args.settings} does not exist", "start the sandbox first: python -m sandbox", exit_code=2
            )
        settings = command_settings(args.settings)
        from dataverse import DataverseClient, credential_from_config

        client = DataverseClient(settings.dataverse.url, credential=credential_from_config(settings.dataverse))
        params = {"$top": str(args.top)}
        if args.filter:
            params["$filter"] = args.filter
        if args.select:
            params["$select"] = args.select
        records = client.request("GET", args.entity_set, params=params).json().get("value", [])
        for record in records:
            print(json.dumps({k: v for k, v in record.items() if not k.startswith("@")}, ensure_ascii=False))
        print(f"{len(records)} rows", file=sys.stderr)
        return 0

    return run_command(parser, body, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rows"]:
        return rows(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="JSON data file (default: the bundled Finnish sample)")
    parser.add_argument("--port", type=int, default=7071, help="the app's port (default 7071)")
    parser.add_argument("--dataverse-port", type=int, default=7072)
    parser.add_argument("--enreach-port", type=int, default=7073)
    parser.add_argument("--no-azurite", action="store_true", help="do not start Azurite (storage-free runs)")
    parser.add_argument(
        "--pace",
        action="store_true",
        help="Dataverse's pace: 10 ms per operation, x-ms-dop-hint 4, the documented service protection limits",
    )
    parser.add_argument("--no-timers", action="store_true", help="run timers only by hand (POST /admin/functions/..)")
    parser.add_argument(
        "--settings-file",
        type=Path,
        default=SETTINGS_FILE,
        help=f"where to write the settings pointing at the sandbox (default {SETTINGS_FILE.name})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP exchange at INFO

    try:
        data = load_data(args.data)
    except (OSError, ValueError) as error:
        print(f"sandbox: cannot use the data file: {error}", file=sys.stderr)
        return 2
    moved = shift_call_times(data)  # sample calls end 30 minutes ago, so the call sync has work at once
    services = Services(
        data=data,
        dataverse_port=args.dataverse_port,
        enreach_port=args.enreach_port,
        with_azurite=not args.no_azurite,
        provision=False,  # provisioned below through the metadata Web API, as on a real environment
    )
    try:
        services.start()
    except (OSError, RuntimeError) as error:
        print(f"sandbox: could not start the emulators: {error}", file=sys.stderr)
        services.stop()
        return 2
    except Exception as error:  # the emulators refused the data file's content
        print(
            f"sandbox: the data file {args.data or 'sample'} does not load: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        services.stop()
        return 2
    if args.pace:
        from dataclasses import replace

        from emulators._protection import DOCUMENTED_LIMITS

        services.dataverse.configure_limits(replace(DOCUMENTED_LIMITS, op_ms=10, dop_hint=4, workers=52))
    settings = services.app_settings()
    if not os.environ.get("ROUTING_API_KEY") and not os.environ.get("ROUTING_BASIC_USER"):
        settings["ROUTING_API_KEY"] = secrets.token_urlsafe(24)
    settings.setdefault("ENREACH_WEBHOOK_SECRET", secrets.token_urlsafe(24))
    # The emulator's notification types: no public source names the real availability or call-end
    # ones, so a tenant maps its own (README, "The Enreach mapping"); the sandbox maps the emulator's.
    settings.setdefault(
        "ENREACH_FIELD_MAP",
        json.dumps(
            {
                "events": {
                    "availability_changed": [services.enreach.availability_event_type],
                    "call_end": ["EmulatorCallEnded"],
                }
            }
        ),
    )
    # Callback requests are off by default in a deployment (not in the default BRIDGE_JOBS); the
    # sandbox runs every job, each callback list's requests queued in the Dataverse queue of the same
    # name where the data has one.
    settings.setdefault("BRIDGE_JOBS", "all")
    if "CALLBACK_QUEUES" not in settings:
        queues = {q["name"]: q["queueid"] for q in services.dataverse.rows("queues") if q.get("name")}
        if queues:
            settings["CALLBACK_QUEUES"] = json.dumps(queues)
    os.environ.update(settings)
    try:
        load_settings()
    except SettingsError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        services.stop()
        return 2

    from dataverse import DataverseClient, credential_from_config
    from ops.provision import provision

    settings_object = load_settings()
    client = DataverseClient(
        settings_object.dataverse.url, credential=credential_from_config(settings_object.dataverse)
    )
    provision(client, report=lambda line: None)  # tables, the Enreach Bridge app and its view
    from ops.config import import_rows

    # the sample routing rules become enr_routingrule rows, as `python -m ops config import` makes them
    sample_rules = (Path(__file__).resolve().parent / "sample_rules.json").read_text(encoding="utf-8")
    import_rows(client, {**os.environ, "ROUTING_RULES": sample_rules}, out=lambda line: None)

    from function_app import app  # after the environment is complete, as in the host

    from .host import LocalFunctionsHost

    try:
        host = LocalFunctionsHost(app, port=args.port).start()
    except OSError as error:
        print(f"sandbox: cannot listen on port {args.port}: {error}", file=sys.stderr)
        services.stop()
        return 2
    print(f"Dataverse emulator: {services.dataverse.url}/api/data/v9.2/")
    print(f"Enreach emulator:   {services.enreach.url} ({moved} sample calls moved: the latest started 30 minutes ago)")
    services.enreach.configure_webhook(
        f"{host.url}/api/presence/enreach",
        secret=os.environ["ENREACH_WEBHOOK_SECRET"],
        header=settings_object.enreach.webhook_secret_header,
    )
    print(f"Token service:      {services.tokens.url} (AZURE_AUTHORITY_HOST)")
    print(f"CA bundle:          {services.ca.bundle_path} (REQUESTS_CA_BUNDLE: trust it to call the token service)")
    if services.azurite is not None:
        print(f"Azurite (tables):   http://127.0.0.1:{services.azurite.port}")
    host.warm_up()  # as Premium does before a new instance takes traffic
    if services.azurite is not None:
        host.run_function("sync_phone_index")  # lookups work on freshly loaded data at once
    else:
        print("No Azurite: sync_phone_index did not run; routing uses exact-format lookups only.")
    print("Functions:")
    for line in host.describe():
        print(f"  {line}")
    if not args.no_timers and services.azurite is not None:
        for name, first in host.start_timers().items():
            print(f"  timer {name} fires next at {first:%H:%M:%S} UTC")
    else:
        print("Timers run only by hand (POST /admin/functions/<name>).")
    if os.environ.get("ROUTING_API_KEY"):
        print(f"Routing API key (X-Benemen-APIKey): {os.environ['ROUTING_API_KEY']}")
    print(
        f"Enreach notifications go to /api/presence/enreach with header "
        f"{settings_object.enreach.webhook_secret_header}: {os.environ['ENREACH_WEBHOOK_SECRET']}"
    )
    print(f"  its event types (ENREACH_FIELD_MAP): {os.environ['ENREACH_FIELD_MAP']}")
    print(f"Presence webhook key (X-Presence-Key): {os.environ['PRESENCE_WEBHOOK_KEY']}")
    values = {name: os.environ[name] for name in settings}
    values["REQUESTS_CA_BUNDLE"] = services.ca.bundle_path
    settings_file = args.settings_file.resolve()
    write_settings_file(settings_file, values)
    print(f"Settings file:      {settings_file}")
    print(f"  e.g. python -m routing --settings {settings_file} explain +358501234567 --bnum +358942420000")
    print("       python -m sandbox rows contacts --filter \"startswith(fullname,'L')\"")
    print("Ready. Ctrl+C stops.", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    host.stop()
    services.stop()
    settings_file.unlink(missing_ok=True)  # it points at ports and a CA that are gone now
    return 0


if __name__ == "__main__":
    sys.exit(main())
