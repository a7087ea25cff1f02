"""``python -m sandbox`` as a user runs it: a real process, curl-like requests over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.request import Request, urlopen

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    ports = [_free_port() for _ in range(3)]
    settings_file = tmp_path_factory.mktemp("sandbox") / "sandbox.settings.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "DATAVERSE_", "ENREACH_", "ROUTING_"))}
    env.update({"ROUTING_API_KEY": "sandbox-test-key-0123456789", "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            str(ports[0]),
            "--dataverse-port",
            str(ports[1]),
            "--enreach-port",
            str(ports[2]),
            "--settings-file",
            str(settings_file),
            "--no-timers",  # runs below are by hand: a scheduled one would add log lines (tests/test_host.py)
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ready."):
            break
    if not lines or not lines[-1].startswith("Ready."):
        process.kill()
        pytest.fail("sandbox did not start:\n" + "".join(lines) + (process.stdout.read() or ""))
    log: list[str] = []  # what the sandbox logs while the tests run
    reader = threading.Thread(target=lambda: log.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    yield {
        "app": f"http://127.0.0.1:{ports[0]}",
        "dataverse": f"http://127.0.0.1:{ports[1]}",
        "enreach": f"http://127.0.0.1:{ports[2]}",
        "banner": "".join(lines),
        "settings_file": settings_file,
        "log": log,
    }
    process.terminate()
    process.wait(timeout=20)
    assert not settings_file.exists()  # removed on stop: its ports and CA are gone


def _get(url: str) -> tuple[int, dict]:
    with urlopen(Request(url), timeout=10) as response:
        return response.status, json.loads(response.read() or b"null")


def test_banner_names_the_endpoints_and_the_key_from_the_environment(sandbox):
    assert "/api/data/v9.2/" in sandbox["banner"]
    assert "health: [GET]" in sandbox["banner"]
    assert "Routing API key (X-Benemen-APIKey): sandbox-test-key-0123456789" in sandbox["banner"]


def test_health_answers_through_the_local_host(sandbox):
    assert _get(sandbox["app"] + "/api/health") == (200, {"status": "ok"})


def test_sample_data_is_loaded_into_the_emulators(sandbox):
    status, counters = _get(sandbox["dataverse"] + "/_emulator/requests")
    assert status == 200 and "count" in counters
    request = Request(sandbox["enreach"] + "/discovery/api/user?user=api.user@example.fi")
    with urlopen(request, timeout=10) as response:
        assert json.loads(response.read())[0]["apiEndpoint"].startswith(sandbox["enreach"])


def test_the_sandbox_provisions_the_app_and_loads_its_sample_rules_as_rows(sandbox):
    settings = str(sandbox["settings_file"])
    rules = _command("sandbox", "rows", "--settings", settings, "enr_routingrules", "--select", "enr_name,enr_order")
    assert rules.returncode == 0, rules.stderr
    assert [json.loads(line)["enr_name"] for line in rules.stdout.splitlines()] == ["support-evenings", "owner"]
    apps = _command("sandbox", "rows", "--settings", settings, "appmodules", "--select", "name")
    assert [json.loads(line)["name"] for line in apps.stdout.splitlines()] == ["Enreach Bridge"]
    shown = _command("ops", "--settings", settings, "config", "show")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "routing rules: 2 from rows" in shown.stdout and "problems: none" in shown.stdout


def test_unknown_routes_and_functions_are_404(sandbox):
    from urllib.error import HTTPError

    with pytest.raises(HTTPError) as caught:
        urlopen(Request(sandbox["app"] + "/api/nope"), timeout=10)
    assert caught.value.code == 404
    with pytest.raises(HTTPError) as caught:
        urlopen(Request(sandbox["app"] + "/admin/functions/nope", method="POST", data=b""), timeout=10)
    assert caught.value.code == 404


def _post(url: str, body: dict, key: str = "sandbox-test-key-0123456789") -> tuple[int, bytes]:
    request = Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Benemen-APIKey": key},
    )
    with urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_routing_webhook_routes_the_sample_callers(sandbox):
    url = sandbox["app"] + "/api/routing"
    pool = "+358942420000"
    # Rautakauppa Nieminen Oy, stored "+358 50 123 4567", owned by Aino (+358 9 4242 1001)
    assert _post(url, {"anum": "+358501234567", "bnum": pool}) == (200, b'{"InitialTarget": "+358942421001"}')
    # Kahvila Aalto, stored "(09) 123 456", owned by Mikko
    assert _post(url, {"anum": "+3589123456", "bnum": pool}) == (200, b'{"InitialTarget": "+358942421002"}')
    # Tuomas Laine shares the last seven digits with Lähettipalvelu Laine but is Aino's customer
    assert _post(url, {"anum": "+358441234567", "bnum": pool})[1] == b'{"InitialTarget": "+358942421001"}'
    assert _post(url, {"anum": "+358451234567", "bnum": pool})[1] == b'{"InitialTarget": "+358942421003"}'
    assert _post(url, {"anum": "+358409999999", "bnum": pool}) == (204, b"")


def _wait_for(log: list[str], needle: str, count: int = 1, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in list(log) if needle in line]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return [line for line in list(log) if needle in line]


def test_routing_webhook_refuses_a_wrong_key_and_logs_one_masked_line(sandbox):
    from urllib.error import HTTPError

    before = len(sandbox["log"])
    with pytest.raises(HTTPError) as caught:
        _post(sandbox["app"] + "/api/routing", {"anum": "+358501234567", "bnum": "+358942420000"}, key="wrong")
    assert caught.value.code == 401
    with pytest.raises(HTTPError) as caught:
        _post(sandbox["app"] + "/api/routing", {"anum": "+358501234567" * 10, "bnum": "+358942420000"})
    assert caught.value.code == 400
    refused = _wait_for(sandbox["log"], '"event": "http_refused", "function": "routing"', count=2)
    mine = [line for line in refused if line in sandbox["log"][before:]]
    assert len(mine) == 2, sandbox["log"]
    event = json.loads(mine[0][mine[0].index("{") :])
    assert event["status"] == 401 and "X-Benemen-APIKey" in event["reason"]
    assert json.loads(mine[1][mine[1].index("{") :])["field"] == "anum"
    with pytest.raises(HTTPError) as caught:
        _post(sandbox["app"] + "/api/presence/dataverse", {"PrimaryEntityName": "msdyn_agentstatus"}, key="wrong")
    assert caught.value.code == 401
    presence = _wait_for(sandbox["log"], '"event": "http_refused", "function": "presence_dataverse"')
    assert len([line for line in presence if line in sandbox["log"][before:]]) == 1
    text = "".join(sandbox["log"][before:])
    assert "501234567" not in text and "wrong" not in text  # no number, no body, no credential


def test_banner_prints_token_service_ca_bundle_presence_key_and_settings_file(sandbox):
    banner = sandbox["banner"]
    values = json.loads(sandbox["settings_file"].read_text())["Values"]
    assert f"Token service:      {values['AZURE_AUTHORITY_HOST']}" in banner
    assert f"CA bundle:          {values['REQUESTS_CA_BUNDLE']}" in banner
    assert f"Presence webhook key (X-Presence-Key): {values['PRESENCE_WEBHOOK_KEY']}" in banner
    assert f"Settings file:      {sandbox['settings_file']}" in banner
    assert oct(sandbox["settings_file"].stat().st_mode & 0o777) == "0o600"


def _command(*args: str) -> subprocess.CompletedProcess[str]:
    """A fresh process with nothing but the settings file to go on."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_the_settings_file_drives_call_sync_users_and_routing_explain(sandbox):
    settings = str(sandbox["settings_file"])
    users = _command("call_sync", "--settings", settings, "users")
    assert users.returncode == 0, users.stderr
    assert "users" in users.stdout
    explained = _command("routing", "--settings", settings, "explain", "+358501234567", "--bnum", "+358942420000")
    assert explained.returncode == 0, explained.stderr
    assert json.loads(explained.stdout)["answer"] == {"InitialTarget": "+358942421001"}


def test_rows_lists_the_emulators_rows_with_a_filter(sandbox):
    listed = _command(
        "sandbox",
        "rows",
        "--settings",
        str(sandbox["settings_file"]),
        "systemusers",
        "--filter",
        "startswith(fullname,'Aino')",
        "--select",
        "fullname",
    )
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert rows and all(r["fullname"].startswith("Aino") for r in rows)
    wrong = _command("sandbox", "rows", "--settings", str(sandbox["settings_file"]), "contactz")
    assert wrong.returncode == 1 and "contactz" in wrong.stderr and "Traceback" not in wrong.stderr


def test_a_bad_data_file_gets_one_line_naming_the_entity_set_or_field(tmp_path):
    for content, named in (
        ({"dataverse": {"contactz": [{"fullname": "Liisa"}]}}, "unknown entity set 'contactz'"),
        ({"dataverse": {"contacts": [{"_ownerid_value": "aino"}]}}, "dataverse.contacts[0]._ownerid_value"),
        ({"dataverse": {"contacts": {"fullname": "Liisa"}}}, "dataverse.contacts: must be a list"),
    ):
        data = tmp_path / "data.json"
        data.write_text(json.dumps(content))
        result = _command("sandbox", "--data", str(data), "--no-azurite", "--port", "0")
        assert result.returncode == 2 and named in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_timer_runs_through_the_admin_endpoint_and_each_run_logs_one_json_line(sandbox):
    before = len(sandbox["log"])
    for name in ("sync_phone_index", "sync_enreach_user_ids", "sync_phone_calls"):
        request = Request(sandbox["app"] + f"/admin/functions/{name}", method="POST", data=b"")
        with urlopen(request, timeout=30) as response:
            assert response.status == 202
        _wait_for(sandbox["log"], f'"event": "{name}"')
        lines = [line for line in sandbox["log"][before:] if f'"event": "{name}"' in line]
        assert len(lines) == 1, sandbox["log"][before:]
        event = json.loads(lines[0][lines[0].index("{") :])
        assert event["outcome"] == "ok" and event["duration_ms"] >= 0 and "failed" in event, event


def test_one_sync_callbacks_run_shows_the_sample_callbacks_in_dataverse(sandbox):
    before = len(sandbox["log"])
    request = Request(sandbox["app"] + "/admin/functions/sync_callbacks", method="POST", data=b"")
    with urlopen(request, timeout=30) as response:
        assert response.status == 202
    _wait_for(sandbox["log"], '"event": "sync_callbacks"')
    lines = [line for line in sandbox["log"][before:] if '"event": "sync_callbacks"' in line]
    assert len(lines) == 1, sandbox["log"][before:]
    event = json.loads(lines[0][lines[0].index("{") :])
    assert event["outcome"] == "ok" and event["created"] + event["unchanged"] == 2, event
    listed = _command(
        "sandbox",
        "rows",
        "--settings",
        str(sandbox["settings_file"]),
        "phonecalls",
        "--filter",
        "enr_enreachcallbackid ne null",
        "--select",
        "subject,phonenumber,enr_callbacklist,statecode",
    )
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 2 and all(r["enr_callbacklist"] == "Sales callbacks" and r["statecode"] == 0 for r in rows)
    assert any("Rautakauppa Nieminen Oy" in r["subject"] for r in rows), rows  # the sample customer, matched
    queued = _command("sandbox", "rows", "--settings", str(sandbox["settings_file"]), "queueitems")
    assert queued.returncode == 0 and len(queued.stdout.splitlines()) >= 1, queued.stderr
