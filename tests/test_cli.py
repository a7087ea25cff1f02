"""The admin commands as an administrator runs them: a fresh process, settings from a
local.settings.json, against the emulators loaded with the sandbox's sample data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulators._server import FaultRule
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
    not_a_number = _run("routing", "--settings", str(settings_file), "explain", "hello", ca_bundle=ca)
    assert not_a_number.returncode == 2 and "'hello' is not a phone number" in not_a_number.stderr


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


def _clear_tables(connection_string: str, *names: str) -> None:
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(connection_string)
    for name in names:
        service.delete_table(name)


def _sample_calls(world):
    from enreach import EnreachCall

    ids = {str(u["UserName"]).lower(): u["Id"] for u in world.enreach.users}  # whose query answers the record
    return [EnreachCall.from_api(item, user_id=ids.get(item["UserName"].lower())) for item in world.enreach.calls]


def test_status_shows_the_checkpoint_its_lag_the_last_run_and_the_parked_calls(settings_file, world, azurite):
    from dataclasses import replace
    from datetime import timedelta

    from bridge.settings import load_settings
    from call_sync.calls import call_key, sync_phone_calls
    from call_sync.parking import ParkedCalls
    from call_sync.runtime import lookup_for, options
    from core.state import CheckpointStore
    from emulators.dataverse import APPLICATION_USER_ID
    from tests.helpers import dataverse_client_for, enreach_client_for

    _clear_tables(azurite.connection_string, "bridgecheckpoints", "bridgeparkedcalls")  # the app's own tables
    ca = world.ca.bundle_path
    before = _run("call_sync", "--settings", str(settings_file), "status", ca_bundle=ca)
    assert before.returncode == 0, before.stderr
    assert "checkpoint: none yet" in before.stdout and "parked calls: 0 waiting, 0 expired" in before.stdout
    # Nobody has a Dataverse user yet (a new environment): every Work call is parked.
    users = world.dataverse.tables["systemusers"].rows
    for user_id in [u for u in users if u != APPLICATION_USER_ID]:
        del users[user_id]
    calls = _sample_calls(world)
    parked = {call_key(c) for c in calls if c.classification == "Work" and c.user_id and not c.is_mobile}
    now = max(c.modified or c.start for c in calls).replace(microsecond=0) + timedelta(hours=1)
    settings = load_settings(json.loads(settings_file.read_text())["Values"])
    client = dataverse_client_for(settings)
    report = sync_phone_calls(
        enreach_client_for(settings),
        client,
        CheckpointStore(settings.storage_connection_string),
        lookup_for(settings, client),
        replace(options(settings), initial_lookback=now - min(c.start for c in calls)),
        parking=ParkedCalls(settings.storage_connection_string),
        now=now,
    )
    assert report.parked == len(parked) > 0, report.summary()
    after = _run("call_sync", "--settings", str(settings_file), "status", ca_bundle=ca)
    assert after.returncode == 0, after.stderr
    lines = after.stdout.splitlines()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert lines[0].startswith(f"checkpoint: {stamp} (") and lines[0].endswith(" behind now)")
    assert lines[1].startswith(f"last run: {stamp} ok: phone calls:") and f"{len(parked)} new" in lines[1]
    assert lines[2] == f"parked calls: {len(parked)} waiting (oldest parked {now:%Y-%m-%d %H:%M} UTC), 0 expired"


def test_a_throttling_storm_during_backfill_ends_with_a_summary_and_a_rerun_finishes(settings_file, world):
    from call_sync.calls import call_key

    ca = world.ca.bundle_path
    calls = _sample_calls(world)
    work_calls = sorted({call_key(c) for c in calls if c.classification == "Work"})
    days = sorted({c.start.date().isoformat() for c in calls})
    args = ("call_sync", "--settings", str(settings_file), "backfill", "--from", days[0], "--to", days[-1])
    assert _run("call_sync", "--settings", str(settings_file), "users", ca_bundle=ca).returncode == 0
    world.dataverse.inject(FaultRule(status=429, retry_after=0, path="$batch", count=5))  # past the retry policy
    stormy = _run(*args, ca_bundle=ca)
    assert stormy.returncode == 1 and "Traceback" not in stormy.stderr, stormy.stderr
    assert "throttled (retried next run)" in stormy.stdout and "run the same backfill again" in stormy.stdout
    assert not world.dataverse.rows("phonecalls")
    again = _run(*args, ca_bundle=ca)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(r["enr_enreachcallid"] for r in world.dataverse.rows("phonecalls")) == work_calls


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _variant(settings_file: Path, name: str, **overrides: str) -> Path:
    values = json.loads(settings_file.read_text())["Values"]
    path = settings_file.with_name(f"{name}.settings.json")
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {**values, **overrides}}))
    return path


def _run_all(commands: list[tuple[str, ...]], *, ca_bundle: str) -> list[subprocess.CompletedProcess[str]]:
    """Each command in its own fresh process, all at once (the Dataverse-down ones wait out their retries)."""
    env = {"PATH": "/usr/bin:/bin", "REQUESTS_CA_BUNDLE": ca_bundle}
    started = [
        (
            command,
            subprocess.Popen(
                [sys.executable, "-m", *command],
                cwd=ROOT,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
        )
        for command in commands
    ]
    results = []
    for command, process in started:
        out, err = process.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return results


EVERY_COMMAND = (
    ("call_sync", "users"),
    ("call_sync", "backfill", "--from", "2026-11-24", "--to", "2026-11-24"),
    ("routing", "index"),
    ("routing", "explain", "+358501234567", "--bnum", POOL),
    ("ops", "provision"),
)


def _assert_clean(result: subprocess.CompletedProcess[str], code: int, *named: str) -> None:
    where = f"{result.args}: exit {result.returncode}\nstderr: {result.stderr}"
    assert result.returncode == code, where
    assert "Traceback" not in result.stderr + result.stdout, where
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, where  # the cause, then "fix: ..."
    for text in named:
        assert text in result.stderr, (text, where)


def test_expected_failures_exit_1_with_cause_and_fix_and_no_traceback(settings_file, world):
    """A wrong Azure secret, a wrong Enreach key and an unreachable Dataverse, for every command."""
    wrong_secret = _variant(settings_file, "secret", AZURE_CLIENT_SECRET="not-the-secret")
    wrong_key = _variant(settings_file, "enreach", ENREACH_SECRET_KEY="not-the-key")
    down = _variant(settings_file, "down", DATAVERSE_URL=f"http://127.0.0.1:{_free_port()}")
    runs = [(("AZURE_CLIENT_SECRET",), (c[0], "--settings", str(wrong_secret), *c[1:])) for c in EVERY_COMMAND]
    runs += [
        (("ENREACH_SECRET_KEY", "HTTP 401"), (c[0], "--settings", str(wrong_key), *c[1:]))
        for c in EVERY_COMMAND
        if c[0] == "call_sync"
    ]
    runs += [
        (("Dataverse did not answer", "DATAVERSE_URL"), (c[0], "--settings", str(down), *c[1:])) for c in EVERY_COMMAND
    ]
    results = _run_all([command for _, command in runs], ca_bundle=world.ca.bundle_path)
    for (named, _), result in zip(runs, results, strict=True):
        _assert_clean(result, 1, *named)
    explained = results[3]
    assert json.loads(explained.stdout)["answer"] is None  # the reasoning is still shown


def test_bad_settings_and_bad_arguments_exit_2_without_traceback(world, tmp_path):
    broken = tmp_path / "local.settings.json"
    broken.write_text("{not json")
    commands = [(c[0], "--settings", str(broken), *c[1:]) for c in (*EVERY_COMMAND, ("ops", "doctor"))]
    for result in _run_all(commands, ca_bundle=world.ca.bundle_path):
        _assert_clean(result, 2, str(broken))
    bad_day = _run("call_sync", "backfill", "--from", "yesterday", "--to", "2026-11-24", ca_bundle=world.ca.bundle_path)
    assert (
        bad_day.returncode == 2 and "'yesterday' is not a date" in bad_day.stderr and "Traceback" not in bad_day.stderr
    )


def test_debug_shows_the_traceback(settings_file, world):
    wrong_secret = _variant(settings_file, "secret", AZURE_CLIENT_SECRET="not-the-secret")
    result = _run("call_sync", "--settings", str(wrong_secret), "--debug", "users", ca_bundle=world.ca.bundle_path)
    assert result.returncode == 1 and "Traceback" in result.stderr and "AZURE_CLIENT_SECRET" in result.stderr


def test_throttling_exits_1_naming_it_and_explain_exits_1_when_it_could_not_decide(settings_file, world):
    from emulators._server import FaultRule

    world.dataverse.inject(FaultRule(429, count=100_000, retry_after=0, path="/api/data"))
    commands = [(c[0], "--settings", str(settings_file), *c[1:]) for c in EVERY_COMMAND if c[0] == "routing"]
    for result in _run_all(commands, ca_bundle=world.ca.bundle_path):
        _assert_clean(result, 1, "throttling", "run again")


def test_the_settings_files_ca_bundle_wins_and_an_untrusted_certificate_is_named(settings_file, world):
    """An exported REQUESTS_CA_BUNDLE (common behind corporate proxies) must not break a settings file
    that names its own CA (the sandbox's); without any trust for the token service the failure says
    TLS, not "check the secret"."""
    import certifi

    system = certifi.where()  # trusts public CAs only, not the emulators' throwaway CA
    users = _run("call_sync", "--settings", str(settings_file), "users", ca_bundle=system)
    assert users.returncode == 0, users.stderr
    values = json.loads(settings_file.read_text())["Values"]
    values.pop("REQUESTS_CA_BUNDLE")
    untrusted = settings_file.with_name("untrusted.settings.json")
    untrusted.write_text(json.dumps({"Values": values}))
    failed = _run("call_sync", "--settings", str(untrusted), "users", ca_bundle=system)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert "TLS certificate not trusted" in failed.stderr and "REQUESTS_CA_BUNDLE" in failed.stderr, failed.stderr


def test_callbacks_sync_then_status_from_a_settings_file(settings_file, world, azurite):
    _clear_tables(azurite.connection_string, "bridgecheckpoints")
    ca = world.ca.bundle_path
    values = json.loads(settings_file.read_text())["Values"]
    off = _run("callbacks", "--settings", str(settings_file), "status", ca_bundle=ca)
    assert off.returncode == 0, off.stderr
    assert off.stdout.splitlines()[:2] == [
        "callbacks: off (not in BRIDGE_JOBS), mode -",
        "checkpoint: none yet (the first run reads CALLBACK_INITIAL_LOOKBACK_HOURS back)",
    ]
    values["BRIDGE_JOBS"] = "all"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    synced = _run("callbacks", "--settings", str(settings_file), "sync", ca_bundle=ca)
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.startswith("callbacks: 2 read, 2 created"), synced.stdout
    status = _run("callbacks", "--settings", str(settings_file), "status", ca_bundle=ca)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == "callbacks: on, mode both" and lines[1].endswith(" behind now)")
    assert lines[2].startswith("last run: ") and " ok: callbacks: 2 read, 2 created" in lines[2]
    assert lines[3] == "open callback activities: 2 (0 past their expiry, closed by the next run)"
    values["CALLBACK_MODE"] = "never"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    wrong = _run("callbacks", "--settings", str(settings_file), "status", ca_bundle=ca)
    assert wrong.returncode == 2 and "CALLBACK_MODE must be poll, notify or both" in wrong.stderr
