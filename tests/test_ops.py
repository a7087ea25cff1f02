"""Provisioning and the doctor against the emulators; telemetry masking over a full run."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.settings import load_settings
from ops.doctor import run_doctor
from ops.provision import REQUIRED, provision
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_call, enreach_client_for, enreach_users

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def env(world, azurite):
    return world.app_settings(
        {"ROUTING_API_KEY": "test-routing-key-0123456789", "AzureWebJobsStorage": azurite.connection_string}
    )


def _client(env):
    settings = load_settings(env)
    return dataverse_client_for(settings)


def _schema(emulator):
    return {
        name: (t.logical_name, t.primary_key, sorted(t.columns), dict(t.alternate_keys))
        for name, t in emulator.tables.items()
    }


def test_provision_creates_everything_once_and_matches_the_test_shortcut(world, env):
    lines = []
    created, existing = provision(_client(env), report=lines.append)
    assert len(created) == len(REQUIRED) == 12 and existing == []
    assert "created  table enr_phoneindex" in lines
    provisioned = _schema(world.dataverse)
    again, existing = provision(_client(env), report=lines.append)
    assert again == [] and len(existing) == len(REQUIRED)
    assert _schema(world.dataverse) == provisioned  # the second run changed nothing
    world.dataverse.reset()
    provision_app_schema(world.dataverse)
    assert _schema(world.dataverse) == provisioned  # tests' shortcut gives the same schema


def test_dry_run_changes_nothing(world, env):
    before = _schema(world.dataverse)
    created, _ = provision(_client(env), dry_run=True, report=lambda line: None)
    assert len(created) == len(REQUIRED) and _schema(world.dataverse) == before
    assert world.dataverse.request_count(method="POST") == 0


def _lines(checks):
    return {c.name.split(" (")[0].split(" for ")[0]: c for c in checks}


def test_doctor_on_a_fresh_environment_names_the_missing_schema_then_passes_after_provision(world, env):
    world.dataverse.load({"systemusers": [{"fullname": "Aino", "enr_enreachuserid": "e1"}]})
    checks = _lines(run_doctor(env))
    schema = checks["provisioned schema"]
    assert not schema.ok and schema.fix == "run: python -m ops provision"
    assert "table enr_phoneindex" in schema.detail and "key phonecall.enr_enreachcallid_key" in schema.detail
    assert checks["token"].ok and checks["Dataverse WhoAmI"].ok and checks["Enreach API"].ok
    provision(_client(env), report=lambda line: None)
    from core.state import CheckpointStore
    from routing.index_sync import sync_phone_index

    world.dataverse.load({"contacts": [{"fullname": "Liisa", "mobilephone": "050 765 4321"}]})
    settings = load_settings(env)
    sync_phone_index(
        _client(env),
        CheckpointStore(settings.storage_connection_string, table_name="d" + uuid.uuid4().hex[:8]),
        phone_columns=settings.routing_phone_columns,
        region="FI",
    )
    checks = run_doctor(env)
    assert all(c.ok for c in checks), "\n".join(c.line() for c in checks)
    assert _lines(checks)["users mapped to Enreach ids"].detail == "1 users"


def test_doctor_names_a_wrong_secret(world, env):
    checks = run_doctor({**env, "AZURE_CLIENT_SECRET": "not-the-secret"})
    token = checks[1]
    assert not token.ok and "Invalid client secret" in token.detail and "Certificates & secrets" in token.fix
    assert len(checks) == 6  # nothing else of Dataverse is tried without a token


def test_doctor_runs_the_enreach_probe_in_brief(world, env):
    now = datetime.now(UTC)
    world.enreach.load(
        {
            **enreach_users(("e1", "a@example.fi", None)),
            "calls": [enreach_call("c1", "a@example.fi", now - timedelta(hours=2), classification=None)],
        }
    )
    mapping = _lines(run_doctor(env))["Enreach field mapping"]
    assert not mapping.ok and "0 of 1 calls are classified Work" in mapping.detail
    assert "probe-enreach" in mapping.fix
    world.enreach.calls[0]["Classification"] = "Work"
    assert _lines(run_doctor(env))["Enreach field mapping"].ok


def test_doctor_names_missing_privileges(world, env):
    world.dataverse.denied_privileges.update({"prvCreateActivity", "prvReadLead"})
    role = _lines(run_doctor(env))["security role privileges"]
    assert not role.ok and "prvCreateActivity" in role.detail and "prvReadLead" in role.detail


def test_doctor_lists_every_settings_problem(world):
    checks = run_doctor({})
    assert all(not c.ok for c in checks) and any("DATAVERSE_URL" in c.detail for c in checks)


def test_doctor_command_exit_status_and_output(world, env, tmp_path):
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"Values": env}))
    clean_env = {"PATH": "/usr/bin:/bin", "REQUESTS_CA_BUNDLE": env["REQUESTS_CA_BUNDLE"]}

    def ops(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops", "--settings", str(settings_file), command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=clean_env,
            timeout=120,
        )

    result = ops("doctor")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PROBLEM provisioned schema" in result.stdout and "fix: run: python -m ops provision" in result.stdout
    provisioned = ops("provision")
    assert provisioned.returncode == 0 and f"created {len(REQUIRED)}, already there 0" in provisioned.stdout


def test_a_full_routing_and_sync_run_logs_no_unmasked_number_and_no_secret(world, env):
    """Everything logged at DEBUG (SDKs and HTTP libraries included) through the app's telemetry set-up."""
    from call_sync.calls import CallSyncOptions, sync_phone_calls
    from call_sync.parking import ParkedCalls
    from call_sync.runtime import lookup_for
    from core.state import CheckpointStore
    from core.telemetry import configure_telemetry
    from routing.http import handle_routing_request
    from routing.index_sync import sync_phone_index
    from routing.runtime import build_router

    numbers = ["+358501234567", "+358507654321", "+358401110001"]
    owner = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01"
    world.dataverse.load(
        {
            "systemusers": [
                {
                    "systemuserid": owner,
                    "fullname": "Aino",
                    "address1_telephone1": "+358 9 4242 1001",
                    "mobilephone": numbers[2],
                    "enr_enreachuserid": "e1",
                }
            ],
            "accounts": [{"name": "Oy", "telephone1": "+358 50 123 4567", "_ownerid_value": owner}],
            "contacts": [{"fullname": "Liisa", "mobilephone": "050-765 4321", "_ownerid_value": owner}],
        }
    )
    provision_app_schema(world.dataverse)
    world.enreach.load(
        {
            **enreach_users(("e1", "a@example.fi", numbers[2])),
            "calls": [
                enreach_call(f"c{i}", "a@example.fi", datetime(2026, 11, 24, 8, tzinfo=UTC), seconds=120, number=n)
                for i, n in enumerate(numbers[:2])
            ],
        }
    )
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    root = logging.getLogger()
    handler = Collect(level=logging.DEBUG)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        configure_telemetry()
        settings = load_settings({**env, "ROUTING_TIME_BUDGET_SECONDS": "4"})
        client = _client(env)
        store = CheckpointStore(settings.storage_connection_string, table_name="m" + uuid.uuid4().hex[:8])
        sync_phone_index(client, store, phone_columns=settings.routing_phone_columns, region="FI")
        router = build_router(settings, client)
        for number in [*numbers, "+358409999999"]:
            body = json.dumps({"anum": number, "bnum": "+358942420000"}).encode()
            handle_routing_request(
                method="POST",
                headers={"Content-Type": "application/json", "X-Benemen-APIKey": settings.routing_api_key},
                params={},
                body=body,
                router=lambda: router,
                api_key=settings.routing_api_key,
                basic_user=None,
                basic_password=None,
            )
        router.close()
        enreach = enreach_client_for(settings)

        lookup = lookup_for(settings, client)
        report = sync_phone_calls(
            enreach,
            client,
            store,
            lookup,
            CallSyncOptions(region="FI"),
            parking=ParkedCalls(settings.storage_connection_string, table_name="p" + uuid.uuid4().hex[:8]),
            now=datetime(2026, 11, 24, 12, tzinfo=UTC),
        )
        assert report.created == 2
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = "\n".join(records)
    assert "routing_decision" in text and "phone calls: 2 read" in text  # the run did log
    for number in [*numbers, "+358409999999", "+358942421001"]:
        digits = number[1:]
        assert digits not in text and digits[3:] not in text, f"{number} leaked"
    for secret in (
        settings.routing_api_key,
        settings.azure_client_secret,
        settings.enreach_secret_key,
        settings.presence_webhook_key,
        "AccountKey=",
    ):
        assert secret and secret not in text
    assert "emu." not in text  # no bearer token
