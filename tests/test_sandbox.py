"""``python -m sandbox`` as a user runs it: a real process, curl-like requests over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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
def sandbox():
    ports = [_free_port() for _ in range(3)]
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
    yield {
        "app": f"http://127.0.0.1:{ports[0]}",
        "dataverse": f"http://127.0.0.1:{ports[1]}",
        "enreach": f"http://127.0.0.1:{ports[2]}",
        "banner": "".join(lines),
    }
    process.terminate()
    process.wait(timeout=20)


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


def test_routing_webhook_refuses_a_wrong_key(sandbox):
    from urllib.error import HTTPError

    with pytest.raises(HTTPError) as caught:
        _post(sandbox["app"] + "/api/routing", {"anum": "+358501234567", "bnum": "+358942420000"}, key="wrong")
    assert caught.value.code == 401


def test_timer_runs_through_the_admin_endpoint(sandbox):
    request = Request(sandbox["app"] + "/admin/functions/sync_phone_index", method="POST", data=b"")
    with urlopen(request, timeout=30) as response:
        assert response.status == 202
