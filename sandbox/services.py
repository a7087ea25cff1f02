"""Start the emulated world the app talks to: tokens, Dataverse, Enreach, and Azurite for storage.

Used by ``python -m sandbox`` and by the tests, so both run the app against the same parts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.settings import SETTING_NAMES
from emulators.dataverse import DataverseEmulator
from emulators.enreach import EnreachEmulator
from emulators.tokens import TestCA, TokenIssuer, TokenServer

__all__ = ["SAMPLE_DATA", "SANDBOX_CREDENTIALS", "Azurite", "Services", "load_data"]

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data.json"

# The sandbox's own app registration and Enreach API user (emulated; not secrets of anyone).
SANDBOX_CREDENTIALS = {
    "AZURE_TENANT_ID": "7e4b1c52-5f0a-4d47-9c55-0a1b2c3d4e5f",
    "AZURE_CLIENT_ID": "5a1d0c4e-8b2f-4e61-a7d3-6f5e4d3c2b1a",
    "AZURE_CLIENT_SECRET": "sandbox-client-secret",
    "ENREACH_USER": "api.user@example.fi",
    "ENREACH_SECRET_KEY": "sandbox-enreach-secret",
}

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def load_data(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The sandbox data file (``{"dataverse": {...}, "enreach": {...}}``); the bundled sample by default.

    A mistake raises ``ValueError`` with one line naming the file and the entity set or field."""
    name = str(path or SAMPLE_DATA)
    try:
        with open(name, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{name}: the data file must hold one JSON object with 'dataverse' and 'enreach'")
    unknown = set(data) - {"dataverse", "enreach", "$comment"}
    if unknown:
        raise ValueError(f"{name}: unknown top-level keys {sorted(unknown)}; use 'dataverse' and 'enreach'")
    problem = _dataverse_problem(data.get("dataverse") or {})
    if problem is None and not isinstance(data.get("enreach") or {}, dict):
        problem = "'enreach' must be an object"
    if problem:
        raise ValueError(f"{name}: {problem}")
    return data


def shift_call_times(data: dict[str, Any], now: datetime | None = None) -> int:
    """Move every Enreach call of the data file by one offset so that the latest starts 30 minutes
    before ``now``: sample calls are always recent, so the timers have work at once. Answers the
    number of calls moved."""
    calls = (data.get("enreach") or {}).get("calls") or []
    fmt = "%Y-%m-%d %H:%M:%S"
    starts = [datetime.strptime(c["StartTime"], fmt) for c in calls if isinstance(c.get("StartTime"), str)]
    if not starts:
        return 0
    anchor = (now or datetime.now(UTC)).replace(tzinfo=None, microsecond=0) - timedelta(minutes=30)
    offset = anchor - max(starts)
    for call in calls:
        for name in ("StartTime", "TimeStamp", "$modified"):
            if isinstance(call.get(name), str):
                call[name] = (datetime.strptime(call[name], fmt) + offset).strftime(fmt)
    return len(calls)


_GUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _dataverse_problem(section: Any) -> str | None:
    """The first mistake in the ``dataverse`` section, naming the entity set, row and field."""
    from emulators.dataverse import BASE_SCHEMA

    if not isinstance(section, dict):
        return "'dataverse' must be an object of entity set -> rows"
    for entity_set, rows in section.items():
        if entity_set in ("$columns", "$alternatekeys", "$comment"):
            for target in rows if isinstance(rows, dict) and entity_set != "$comment" else ():
                if target not in BASE_SCHEMA:
                    return f"dataverse.{entity_set}: unknown entity set {target!r} (known: {', '.join(BASE_SCHEMA)})"
            continue
        if entity_set not in BASE_SCHEMA:
            return f"dataverse: unknown entity set {entity_set!r} (known: {', '.join(BASE_SCHEMA)})"
        if not isinstance(rows, list):
            return f"dataverse.{entity_set}: must be a list of rows"
        primary_key = BASE_SCHEMA[entity_set][1]
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                return f"dataverse.{entity_set}[{index}]: a row must be an object"
            for field_name, value in row.items():
                guid = field_name == primary_key or (field_name.startswith("_") and field_name.endswith("_value"))
                if guid and value is not None and not (isinstance(value, str) and _GUID_TEXT.match(value)):
                    return f"dataverse.{entity_set}[{index}].{field_name}: {value!r} is not a GUID"
    return None


def provision_app_schema(emulator: DataverseEmulator) -> None:
    """Give the emulator the tables, columns and keys the app adds to an environment, directly.

    A shortcut for tests; ``python -m ops provision`` does the same through the metadata Web API
    (tests/test_ops.py checks that both give the same schema), and the sandbox uses that.
    """
    from core.schema import CALL_SYNC, CALLBACKS, CONFIG_TABLES, CUSTOMER_TABLES, PHONE_INDEX

    emulator.add_table(
        PHONE_INDEX.entity_set,
        PHONE_INDEX.logical_name,
        PHONE_INDEX.primary_key,
        [
            PHONE_INDEX.key_column,
            "_ownerid_value",
            PHONE_INDEX.number_column,
            PHONE_INDEX.source_column,
            *(f"_{t.index_lookup}_value" for t in CUSTOMER_TABLES),
        ],
    )
    emulator.add_alternate_key(PHONE_INDEX.entity_set, PHONE_INDEX.key_name, [PHONE_INDEX.key_column])
    emulator.add_alternate_key("phonecalls", CALL_SYNC.call_key_name, [CALL_SYNC.call_id_column])
    emulator.add_column("phonecalls", CALL_SYNC.review_column)
    emulator.add_column("systemusers", CALL_SYNC.user_id_column)
    emulator.add_column("systemusers", CALL_SYNC.user_email_column)
    emulator.add_alternate_key("phonecalls", CALLBACKS.request_key_name, [CALLBACKS.request_id_column])
    for column in (CALLBACKS.list_column, CALLBACKS.attempts_column, CALLBACKS.state_column):
        emulator.add_column("phonecalls", column)
    for table in CONFIG_TABLES:  # settings, routing rules, run status (issue 19)
        emulator.add_table(
            table.entity_set,
            table.logical_name,
            table.primary_key,
            [table.name_column, "_ownerid_value", *(c.read_name for c in table.columns)],
        )
        emulator.add_alternate_key(table.entity_set, table.key_name, [table.name_column])
    from core.schema import FOLLOW_UPS
    from ops.provision import REQUIRED

    emulator.add_column("phonecalls", FOLLOW_UPS.result_column)
    emulator.add_column("phonecalls", FOLLOW_UPS.unknown_column)
    emulator.add_alternate_key("tasks", FOLLOW_UPS.follow_up_key_name, [FOLLOW_UPS.follow_up_key_column])
    emulator.add_alternate_key("leads", FOLLOW_UPS.lead_key_name, [FOLLOW_UPS.lead_number_column])
    views = emulator.table("savedqueries")
    known = {(r.get("name"), r.get("returnedtypecode")) for r in views.rows.values()}
    for item in REQUIRED:
        if item.kind == "view" and (item.body["name"], item.body["returnedtypecode"]) not in known:
            view_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"view/{item.body['name']}"))
            views.put(view_id, {**item.body, "savedqueryid": view_id, "versionnumber": 1})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Azurite:
    """Azurite's Table service (npm package ``azurite``) in memory on loopback."""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port or _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir = tempfile.mkdtemp(prefix="azurite-")

    @staticmethod
    def executable() -> str | None:
        local = ROOT / "node_modules" / ".bin" / "azurite-table"
        return str(local) if local.exists() else shutil.which("azurite-table")

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    def start(self, timeout: float = 30.0) -> Azurite:
        executable = self.executable()
        if executable is None:
            raise RuntimeError("Azurite is not installed: run `npm ci` in the project folder (see README)")
        self._process = subprocess.Popen(
            [
                executable,
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.port),
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--disableProductStyleUrl",
                "--silent",
            ],
            cwd=self._workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"Azurite exited at start: {error.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Azurite did not listen on port {self.port} within {timeout:.0f}s")

    def restart(self) -> None:
        """Stop and start again on the same port (in-memory data is gone, as after a storage outage)."""
        self.stop()
        self._workdir = tempfile.mkdtemp(prefix="azurite-")
        self.start()

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None
        shutil.rmtree(self._workdir, ignore_errors=True)


@dataclass
class Services:
    """Token service, Dataverse and Enreach emulators, and (optionally) Azurite, started together."""

    data: dict[str, Any] = field(default_factory=dict)
    dataverse_port: int = 0
    enreach_port: int = 0
    with_azurite: bool = True
    provision: bool = True
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def start(self) -> Services:
        env = self.environ
        self.ca = TestCA()
        client_id = env.get("AZURE_CLIENT_ID") or SANDBOX_CREDENTIALS["AZURE_CLIENT_ID"]
        secret = env.get("AZURE_CLIENT_SECRET") or SANDBOX_CREDENTIALS["AZURE_CLIENT_SECRET"]
        self.issuer = TokenIssuer({client_id: secret})
        self.tokens = TokenServer(self.issuer, self.ca).start()
        self.dataverse = DataverseEmulator(self.issuer, self.data.get("dataverse"), port=self.dataverse_port).start()
        if self.provision:
            provision_app_schema(self.dataverse)  # the sandbox provisions over HTTP instead (see __main__)
        enreach_data = dict(self.data.get("enreach") or {})
        user = env.get("ENREACH_USER") or SANDBOX_CREDENTIALS["ENREACH_USER"]
        key = env.get("ENREACH_SECRET_KEY") or SANDBOX_CREDENTIALS["ENREACH_SECRET_KEY"]
        enreach_data["credentials"] = {**(enreach_data.get("credentials") or {}), user: key}
        self.enreach = EnreachEmulator(enreach_data, port=self.enreach_port).start()
        self.azurite: Azurite | None = Azurite().start() if self.with_azurite else None
        return self

    def app_settings(self, overrides: dict[str, str] | None = None) -> dict[str, str]:
        """The app settings pointing the app at these services; set values in ``environ`` win."""
        env = self.environ
        settings = {
            "DATAVERSE_URL": self.dataverse.url,
            "AZURE_AUTHORITY_HOST": self.tokens.url,
            "REQUESTS_CA_BUNDLE": self.ca.bundle_path,
            "ENREACH_DISCOVERY_URL": self.enreach.url + "/discovery",
            "PHONE_DEFAULT_REGION": "FI",
            "PHONE_INDEX_SCHEDULE": "0 */5 * * * *",
            "PHONE_CALL_SYNC_SCHEDULE": "0 */5 * * * *",
            "USER_ID_SYNC_SCHEDULE": "0 0 * * * *",
            "PRESENCE_RECONCILE_SCHEDULE": "0 */5 * * * *",
            "PRESENCE_POLL_SCHEDULE": "0 */2 * * * *",
            "CALLBACK_SYNC_SCHEDULE": "0 * * * * *",
            "PRESENCE_WEBHOOK_KEY": "sandbox-presence-key-0123456789",
            **SANDBOX_CREDENTIALS,
        }
        if self.azurite is not None:
            settings["AzureWebJobsStorage"] = self.azurite.connection_string
        else:
            settings["AzureWebJobsStorage"] = "UseDevelopmentStorage=true"
        for name in SETTING_NAMES:
            if env.get(name):
                settings[name] = env[name]
        settings.update(overrides or {})
        return settings

    def stop(self) -> None:
        for service in (
            getattr(self, "tokens", None),
            getattr(self, "dataverse", None),
            getattr(self, "enreach", None),
        ):
            if service is not None:
                service.stop()
        if getattr(self, "azurite", None) is not None:
            self.azurite.stop()  # type: ignore[union-attr]
