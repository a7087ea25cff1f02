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

from bridge.settings import load_settings
from ops.doctor import run_doctor
from ops.provision import REQUIRED, metadata, provision
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
    assert len(created) == len(REQUIRED) == 69 and existing == []  # 17 + the configuration tables' 44 + 8 (issue 23)
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
        phone_columns=settings.matching.phone_columns,
        region="FI",
    )
    checks = run_doctor(env)
    assert all(c.ok for c in checks), "\n".join(c.line() for c in checks)
    assert _lines(checks)["users mapped to Enreach ids"].detail == "1 users"


def test_doctor_checks_the_callback_schema_and_queues(world, env):
    callbacks = {
        **env,
        "BRIDGE_JOBS": "all",
        "CALLBACK_QUEUES": json.dumps({"Sales": "0a0e0e01-3333-4000-8000-000000000001"}),
    }
    schema = _lines(run_doctor(callbacks))["provisioned schema"]
    assert not schema.ok and "key phonecall.enr_enreachcallbackid_key" in schema.detail
    assert "column phonecall.enr_callbackstate" in schema.detail
    queues = _lines(run_doctor(callbacks))["callback queues"]
    assert not queues.ok and "no such queue: sales -> 0a0e0e01-3333-4000-8000-000000000001" in queues.detail
    world.dataverse.load({"queues": [{"queueid": "0a0e0e01-3333-4000-8000-000000000001", "name": "Sales"}]})
    assert _lines(run_doctor(callbacks))["callback queues"].ok
    assert "callback queues" not in _lines(run_doctor(env))  # the job is off by default


def test_doctor_names_a_wrong_secret(world, env):
    checks = run_doctor({**env, "AZURE_CLIENT_SECRET": "not-the-secret"})
    token = checks[1]
    assert not token.ok and "Invalid client secret" in token.detail and "Certificates & secrets" in token.fix
    # nothing else of Dataverse is tried without a token, and what was not tried is listed as skipped
    skipped = [c for c in checks if c.skipped]
    assert [c.name for c in skipped] == [
        "Dataverse WhoAmI",
        "security role privileges",
        "provisioned schema (columns, keys, phone index)",
        "users mapped to Enreach ids",
        "phone index filled",
    ]
    assert all(c.line().startswith("skipped ") and "no token" in c.line() for c in skipped)
    assert world.dataverse.request_count() == 0


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
        sync_phone_index(client, store, phone_columns=settings.matching.phone_columns, region="FI")
        router = build_router(settings, client)
        for number in [*numbers, "+358409999999"]:
            body = json.dumps({"anum": number, "bnum": "+358942420000"}).encode()
            handle_routing_request(
                method="POST",
                headers={"Content-Type": "application/json", "X-Benemen-APIKey": settings.routing.api_key},
                params={},
                body=body,
                router=lambda: router,
                api_key=settings.routing.api_key,
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
        settings.routing.api_key,
        settings.dataverse.client_secret,
        settings.enreach.secret_key,
        settings.presence.webhook_key,
        "AccountKey=",
    ):
        assert secret and secret not in text
    assert "emu." not in text  # no bearer token


def _ops(settings_file, *args: str, ca_bundle: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", "--settings", str(settings_file), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "REQUESTS_CA_BUNDLE": ca_bundle},
        timeout=120,
    )


def test_doctor_refuses_the_unchanged_sample_naming_each_placeholder_and_exits_2(world):
    sample = ROOT / "local.settings.sample.json"
    result = _ops(sample, "doctor", ca_bundle=world.ca.bundle_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    named = {line.split()[2] for line in result.stdout.splitlines() if "still holds the placeholder" in line}
    assert named == {
        "DATAVERSE_URL",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "ENREACH_USER",
        "ENREACH_SECRET_KEY",
        "ROUTING_API_KEY",
        "PRESENCE_WEBHOOK_KEY",
        "ENREACH_WEBHOOK_SECRET",
    }, result.stdout
    assert "ok " not in result.stdout  # nothing passes on the sample (no "authentication ok")
    assert world.dataverse.request_count() == 0  # and nothing was tried against a placeholder


def test_doctor_exits_2_on_a_settings_problem_and_1_on_a_runtime_problem(world, env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Values": {**env, "PHONE_DEFAULT_REGION": "Finland"}}))
    assert _ops(bad, "doctor", ca_bundle=env["REQUESTS_CA_BUNDLE"]).returncode == 2
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"Values": {**env, "AZURE_CLIENT_SECRET": "not-the-secret"}}))
    result = _ops(wrong, "doctor", ca_bundle=env["REQUESTS_CA_BUNDLE"])
    assert result.returncode == 1 and "PROBLEM token" in result.stdout, result.stdout


def test_doctor_checks_the_index_table_and_act_on_behalf_privileges(world, env):
    world.dataverse.denied_privileges.update({"prvWriteenr_phoneindex", "prvActOnBehalfOfAnotherUser"})
    role = _lines(run_doctor(env))["security role privileges"]
    assert not role.ok and "prvWriteenr_phoneindex" in role.detail and "prvActOnBehalfOfAnotherUser" in role.detail
    assert "MSCRMCallerID" in role.detail
    requested = {
        r["path"].rsplit("PrivilegeName='", 1)[-1][:-2] for r in world.dataverse.requests if "Privilege" in r["path"]
    }
    assert {f"prv{v}enr_phoneindex" for v in ("Create", "Read", "Write", "Delete", "Append")} <= requested


def test_doctor_reports_alternate_keys_by_status(world, env):
    provision(_client(env), report=lambda line: None)
    world.dataverse.key_status.update({"enr_key_unique": "Pending"})
    keys = _lines(run_doctor(env))["alternate keys"]
    assert not keys.ok and "Pending: phonecall" not in keys.detail
    assert (
        "Active: phonecall.enr_enreachcallid_key" in keys.detail
        and "Pending: enr_phoneindex.enr_key_unique" in keys.detail
    )
    assert "still building" in keys.fix
    world.dataverse.key_status.update({"enr_enreachcallid_key": "Failed"})
    keys = _lines(run_doctor(env))["alternate keys"]
    assert not keys.ok and "Failed: phonecall.enr_enreachcallid_key" in keys.detail and "Reactivate" in keys.fix
    world.dataverse.key_status.clear()
    assert _lines(run_doctor(env))["alternate keys"].ok


def _solution_members(emulator, name):
    solution = next(r for r in emulator.rows("solutions") if r["uniquename"] == name)
    return solution, {
        r["objectid"] for r in emulator.rows("solutioncomponents") if r["_solutionid_value"] == solution["solutionid"]
    }


def test_provisioning_twice_makes_one_publisher_and_one_solution_holding_every_component(world, env):
    client = _client(env)
    provision(client, report=lambda line: None)
    provision(client, report=lambda line: None)
    publishers = [r for r in world.dataverse.rows("publishers")]
    assert [(p["uniquename"], p["customizationprefix"]) for p in publishers] == [("enreachbridge", "enr")]
    solutions = world.dataverse.rows("solutions")
    assert len(solutions) == 1 and solutions[0]["uniquename"] == "EnreachBridge"
    assert solutions[0]["_publisherid_value"] == publishers[0]["publisherid"]
    _, members = _solution_members(world.dataverse, "EnreachBridge")
    expected = {str(metadata(client, item)["MetadataId"]) for item in REQUIRED}  # a view: its savedqueryid
    app_parts = {  # the review view, the site map and the app join the solution too (ops/app.py)
        next(
            r
            for r in world.dataverse.rows(entity_set)
            if r.get("name") != "Missed calls" and not str(r.get("name")).startswith("Calls from")
        )[key]
        for entity_set, key in (
            ("savedqueries", "savedqueryid"),
            ("sitemaps", "sitemapid"),
            ("appmodules", "appmoduleid"),
        )
    }
    assert members == expected | app_parts and len(members) == len(REQUIRED) + 3
    creates = [
        r
        for r in world.dataverse.requests
        if r["method"] == "POST" and ("Definitions" in r["path"] or r["path"].endswith("/savedqueries"))
    ]
    assert len(creates) == len(REQUIRED) + 1  # and the review view (ops/app.py); the second run created nothing


def test_provision_adds_components_made_outside_a_solution_and_takes_another_solution_name(world, env):
    provision_app_schema(world.dataverse)  # as provisioned before solutions (Default solution)
    lines: list[str] = []
    created, existing = provision(_client(env), solution="ContosoTelephony", report=lines.append)
    assert created == [] and len(existing) == len(REQUIRED)
    assert sum("added to solution ContosoTelephony" in line for line in lines) == len(REQUIRED), lines
    _, members = _solution_members(world.dataverse, "ContosoTelephony")
    assert len(members) == len(REQUIRED) + 3  # and the view, site map and app, created in it


def test_the_emulator_refuses_an_unknown_solution_or_a_foreign_prefix(world, env):
    from dataverse import DataverseError

    client = _client(env)
    item = REQUIRED[0]
    with pytest.raises(DataverseError) as unknown:
        client.request("POST", item.create_path, json=item.body, headers={"MSCRM.SolutionUniqueName": "Nope"})
    assert unknown.value.status == 404 and "Nope" in str(unknown.value)
    publisher = client.create("publishers", {"uniquename": "other", "customizationprefix": "new"})
    client.create("solutions", {"uniquename": "Other", "publisherid@odata.bind": f"/publishers({publisher})"})
    with pytest.raises(DataverseError) as foreign:
        client.request("POST", item.create_path, json=item.body, headers={"MSCRM.SolutionUniqueName": "Other"})
    assert foreign.value.status == 400 and "prefix new_" in str(foreign.value)
    from ops.provision import ProvisionError

    with pytest.raises(ProvisionError, match="another publisher"):
        provision(client, solution="Other", report=lambda line: None)


def test_unprovision_dry_run_lists_what_removal_would_delete(world, env, tmp_path):
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"Values": env}))
    provision(_client(env), report=lambda line: None)
    result = _ops(settings_file, "unprovision", "--dry-run", ca_bundle=env["REQUESTS_CA_BUNDLE"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "would delete app 'Enreach Bridge'",
        "would delete site map enr_enreachbridge",
        "would delete view phonecall 'Enreach calls for review'",
    ]
    assert lines.index("would delete key enr_phoneindex.enr_key_unique") < lines.index(
        "would delete table enr_phoneindex"
    )
    assert "would delete table enr_phoneindex" in lines and "would delete solution EnreachBridge" in lines
    assert "would delete publisher enreachbridge (no other solution uses it)" in lines
    assert world.dataverse.request_count(method="DELETE") == 0
    refused = _ops(settings_file, "unprovision", ca_bundle=env["REQUESTS_CA_BUNDLE"])
    assert refused.returncode == 2 and "--dry-run" in refused.stderr
