"""The admin commands as an administrator runs them: a fresh process, settings from a
local.settings.json, against the emulators loaded with the sandbox's sample data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.services import load_data, provision_app_schema

ROOT = Path(__file__).resolve().parent.parent
POOL = "+358942420000"


@pytest.fixture()
def settings_file(world, azurite, tmp_path):
    sample = load_data(ROOT / "sandbox" / "sample_data.json")
    world.dataverse.load(sample["dataverse"])
    world.enreach.load(sample["enreach"])
    provision_app_schema(world.dataverse)
    path = tmp_path / "local.settings.json"
    values = world.app_settings(
        {"ROUTING_API_KEY": "cli-routing-key-0123456789", "AzureWebJobsStorage": azurite.connection_string}
    )
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


def _run(*args: str, ca_bundle: str) -> subprocess.CompletedProcess[str]:
    """A clean environment: everything the command knows comes from the settings file."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "REQUESTS_CA_BUNDLE": ca_bundle},
        timeout=120,
    )


def test_routing_index_then_explain_from_a_settings_file(settings_file, world):
    ca = world.ca.bundle_path
    indexed = _run("routing", "--settings", str(settings_file), "index", "--full", ca_bundle=ca)
    assert indexed.returncode == 0, indexed.stderr
    assert world.dataverse.rows("enr_phoneindexes")
    explained = _run(
        "routing", "--settings", str(settings_file), "explain", "050 123 4567", "--bnum", POOL, ca_bundle=ca
    )
    assert explained.returncode == 0, explained.stderr
    decision = json.loads(explained.stdout)
    assert decision["answer"] == {"InitialTarget": "+358942421001"} and decision["used_index"] is True, decision


def test_backfill_dry_run_writes_nothing_then_backfill_writes_each_work_call_once(settings_file, world):
    ca = world.ca.bundle_path
    work_calls = {c["CallId"] for c in world.enreach.calls if c["Classification"] == "Work"}
    day = sorted({c["StartTime"][:10] for c in world.enreach.calls})
    args = ("call_sync", "--settings", str(settings_file), "backfill", "--from", day[0], "--to", day[-1])
    users = _run("call_sync", "--settings", str(settings_file), "users", ca_bundle=ca)  # owners first
    assert users.returncode == 0, users.stderr
    dry = _run(*args, "--dry-run", ca_bundle=ca)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("DRY RUN") and not world.dataverse.rows("phonecalls")
    for _ in range(2):  # the second run finds every call already synced
        real = _run(*args, ca_bundle=ca)
        assert real.returncode == 0, real.stderr
    synced = [r["enr_enreachcallid"].split(":")[0] for r in world.dataverse.rows("phonecalls")]  # "<call>:<user>"
    assert sorted(synced) == sorted(work_calls), real.stdout
    assert f"0 created, {len(work_calls)} already synced, 0 failed" in real.stdout, real.stdout


def test_a_bad_settings_file_is_named_and_exits_2(world, tmp_path):
    broken = tmp_path / "local.settings.json"
    broken.write_text("{not json")
    for command in (("routing", "explain", "+358501234567"), ("call_sync", "users"), ("ops", "provision")):
        result = _run(command[0], "--settings", str(broken), *command[1:], ca_bundle=world.ca.bundle_path)
        assert result.returncode == 2 and str(broken) in result.stderr, (command, result.stderr)
    missing = _run("routing", "explain", "+358501234567", ca_bundle=world.ca.bundle_path)
    assert missing.returncode == 2 and "DATAVERSE_URL" in missing.stderr
