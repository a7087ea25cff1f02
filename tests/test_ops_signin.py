"""The operator commands with the administrator's own sign-in (the settings name a managed
identity), and the doctor's fix line for each kind of failure.

The Azure CLI login is the real ``AzureCliCredential`` running a stand-in ``az`` (tests/fake_az.py)
that gets its token from the sandbox's token service over loopback, as the real CLI gets one from
Entra ID. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from ops.doctor import SIGN_IN, UNREACHABLE, failure_kind, run_doctor
from ops.provision import REQUIRED
from ops.signin import SignInUnavailable, ops_sign_in

ROOT = Path(__file__).resolve().parent.parent
ADMIN_CLIENT = "a0a0a0a0-1111-4222-8333-444444444444"
ADMIN_SECRET = "administrator-signed-in-with-az-login"
APP_ID = "b1b1b1b1-5555-4666-8777-888888888888"  # the managed identity's application id


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def admin(world):
    world.issuer.clients[ADMIN_CLIENT] = ADMIN_SECRET
    yield
    world.issuer.clients.pop(ADMIN_CLIENT, None)


@pytest.fixture()
def mi_env(world, azurite, admin):
    """Settings of a managed-identity deployment: no client secret, no certificate."""
    env = world.app_settings(
        {"ROUTING_API_KEY": "test-routing-key-0123456789", "AzureWebJobsStorage": azurite.connection_string}
    )
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_ID"):
        env.pop(name, None)
    return env


@pytest.fixture()
def fake_az(tmp_path, world):
    """A directory with ``az`` for PATH, and the environment the stand-in reads."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "fake_az.py"}" "$@"\n')
    az.chmod(0o755)
    tenant = world.app_settings()["AZURE_TENANT_ID"]
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_AZ_TOKEN_URL": f"{world.tokens.url}/{tenant}/oauth2/v2.0/token",
        "FAKE_AZ_CLIENT_ID": ADMIN_CLIENT,
        "FAKE_AZ_SECRET": ADMIN_SECRET,
        "FAKE_AZ_LOG": str(tmp_path / "az-calls.jsonl"),
        "REQUESTS_CA_BUNDLE": world.ca.bundle_path,
    }


def _ops(env, fake_az, tmp_path, *args, mode="ok"):
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"Values": env}))
    return subprocess.run(
        [sys.executable, "-m", "ops", "--settings", str(settings_file), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**fake_az, "FAKE_AZ_MODE": mode},
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def _by_name(checks):
    return {c.name.split(" (")[0].split(" for ")[0]: c for c in checks}


# -- the administrator's sign-in -----------------------------------------------------------------


def test_provision_and_doctor_with_a_managed_identity_use_the_administrators_az_login(world, mi_env, fake_az, tmp_path):
    world.dataverse.reset()  # nothing provisioned yet
    world.dataverse.load({"systemusers": [{"fullname": "Bridge app", "applicationid": APP_ID}]})
    provisioned = _ops(mi_env, fake_az, tmp_path, "provision")
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    assert f"created {len(REQUIRED)}, already there 0" in provisioned.stdout
    assert "signed in with your Azure CLI sign-in (az login)" in provisioned.stdout
    calls = [json.loads(line) for line in Path(fake_az["FAKE_AZ_LOG"]).read_text().splitlines()]
    assert calls and all(c[:2] == ["account", "get-access-token"] for c in calls)
    assert mi_env["DATAVERSE_URL"] in calls[0] and "--tenant" in calls[0]
    assert world.issuer.issued_count >= 1

    doctor = _ops(mi_env, fake_az, tmp_path, "doctor", "--app-id", APP_ID)
    out = doctor.stdout
    assert "ok      token for" in out and "your Azure CLI sign-in" in out, out + doctor.stderr
    assert "ok      Dataverse WhoAmI (administrator)" in out
    assert f"ok      security role privileges (application user {APP_ID})" in out, out
    assert "ok      provisioned schema" in out
    assert "managed identity" not in out.split("ok      token")[1].splitlines()[0]  # not the app's identity


def test_doctor_with_a_system_assigned_identity_and_no_app_id_lists_the_privilege_check_as_skipped(
    world, mi_env, fake_az, tmp_path
):
    doctor = _ops(mi_env, fake_az, tmp_path, "doctor")
    assert "skipped security role privileges: not tried: signed in as yourself" in doctor.stdout, doctor.stdout
    assert "skipped" in doctor.stdout.splitlines()[-1]


def test_not_logged_in_to_the_azure_cli_says_az_login_not_the_client_secret(world, mi_env, fake_az, tmp_path):
    doctor = _ops(mi_env, fake_az, tmp_path, "doctor", mode="logged-out")
    assert doctor.returncode == 1
    token_line = next(i for i, line in enumerate(doctor.stdout.splitlines()) if line.startswith("PROBLEM token"))
    fix = doctor.stdout.splitlines()[token_line + 1]
    assert "az login --tenant" in fix and "secret" not in fix, doctor.stdout
    assert "skipped Dataverse WhoAmI: not tried: no token" in doctor.stdout
    provision = _ops(mi_env, fake_az, tmp_path, "provision", mode="logged-out")
    assert provision.returncode == 1 and "fix: sign in to the Azure CLI" in provision.stderr, provision.stderr
    assert "Traceback" not in provision.stderr and "AZURE_CLIENT_SECRET" not in provision.stderr


def test_an_administrator_who_is_no_user_of_the_environment_is_told_so(world, mi_env, fake_az, tmp_path):
    doctor = _ops(mi_env, fake_az, tmp_path, "doctor", mode="bogus-token")
    assert "PROBLEM Dataverse WhoAmI (administrator)" in doctor.stdout, doctor.stdout
    assert "your account is not an enabled user of this environment" in doctor.stdout, doctor.stdout
    assert "add an application user" not in doctor.stdout


def test_without_az_and_without_a_terminal_the_sign_in_says_what_to_do(world, mi_env):
    from bridge.settings import load_settings

    with pytest.raises(SignInUnavailable) as caught:
        ops_sign_in(load_settings(mi_env), which=lambda name: None, interactive=False)
    assert "az login" in caught.value.fix and "device-code" in caught.value.fix
    checks = run_doctor(mi_env, which=lambda name: None, interactive=False)
    names = _by_name(checks)
    assert names["sign-in"].failed and "az login" in names["sign-in"].fix
    assert names["Dataverse WhoAmI"].skipped and names["provisioned schema"].skipped
    assert world.dataverse.request_count() == 0


def test_the_sign_in_order(world, mi_env, settings):
    from bridge.settings import load_settings

    mi = load_settings(mi_env)
    assert ops_sign_in(settings).kind == "client_secret"  # the settings' app registration first
    assert ops_sign_in(mi, which=lambda name: "/usr/bin/az").kind == "azure_cli"
    assert ops_sign_in(mi, which=lambda name: None, interactive=True).kind == "device_code"
    assert ops_sign_in(mi, choice="app").kind == "managed_identity"
    assert ops_sign_in(settings, choice="cli").kind == "azure_cli"


# -- one fix per failure kind --------------------------------------------------------------------


def test_a_refused_dataverse_connection_is_not_an_application_user_problem(world, env_secret):
    checks = run_doctor({**env_secret, "DATAVERSE_URL": f"http://127.0.0.1:{_closed_port()}"})
    whoami = _by_name(checks)["Dataverse WhoAmI"]
    assert whoami.failed and "cannot reach 127.0.0.1" in whoami.fix, whoami.line()
    assert "application user" not in whoami.fix
    assert _by_name(checks)["provisioned schema"].skipped


def test_an_unknown_host_is_classified_unreachable():
    """Resolving a name would leave loopback, so the chain requests raises for one is built here."""
    import requests
    from urllib3.exceptions import MaxRetryError, NameResolutionError

    from dataverse import ServiceUnavailable

    unknown = socket.gaierror(-2, "Name or service not known")
    resolution = NameResolutionError("contoso.crm4.dynamics.com", None, unknown)
    wrapped = requests.ConnectionError(MaxRetryError(None, "/api/data/v9.2/WhoAmI", resolution))
    try:
        try:
            raise wrapped
        except requests.ConnectionError as error:
            raise ServiceUnavailable(0, None, "no connection") from error
    except ServiceUnavailable as outer:
        assert failure_kind(outer) == UNREACHABLE
    assert failure_kind(ServiceUnavailable(503, None, "busy")) != UNREACHABLE


def test_an_unreachable_token_service_is_not_a_wrong_secret(world, env_secret):
    checks = run_doctor({**env_secret, "AZURE_AUTHORITY_HOST": f"https://localhost:{_closed_port()}"})
    token = _by_name(checks)["token"]
    assert token.failed and "cannot reach the sign-in service" in token.fix, token.line()
    assert "Certificates & secrets" not in token.fix


def test_a_wrong_secret_is_a_sign_in_problem_with_the_secret_fix(world, env_secret):
    token = _by_name(run_doctor({**env_secret, "AZURE_CLIENT_SECRET": "not-the-secret"}))["token"]
    assert token.failed and "Certificates & secrets" in token.fix


def test_an_unreachable_enreach_is_not_a_wrong_secret_key(world, env_secret):
    checks = _by_name(run_doctor({**env_secret, "ENREACH_API_URL": f"http://127.0.0.1:{_closed_port()}"}))
    enreach = checks["Enreach API"]
    assert enreach.failed and "cannot reach Enreach (127.0.0.1)" in enreach.fix, enreach.line()
    assert "SECRET_KEY" not in enreach.fix
    mapping = checks["Enreach field mapping"]
    assert mapping.skipped and "the Enreach API check failed" in mapping.detail


def test_a_refused_enreach_key_names_the_secret_key(world, env_secret):
    enreach = _by_name(run_doctor({**env_secret, "ENREACH_SECRET_KEY": "wrong-enreach-key"}))["Enreach API"]
    assert enreach.failed and "ENREACH_SECRET_KEY" in enreach.fix, enreach.line()


def test_unreachable_storage_names_the_network_not_the_key(world, env_secret):
    port = _closed_port()
    cs = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    storage = next(c for c in run_doctor({**env_secret, "AzureWebJobsStorage": cs}) if c.name.startswith("storage"))
    assert storage.failed and "cannot reach the storage account" in storage.fix, storage.line()
    assert "connection string (account devstoreaccount1, with a key)" in storage.name
    assert "Eby8vdM02" not in storage.line()  # never the key


class _TableService(BaseHTTPRequestHandler):
    """A TLS table endpoint that records the Authorization header and answers with ``status``."""

    status = 201
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        body = b"{}" if self.status < 300 else b'{"odata.error":{"code":"AuthorizationPermissionMismatch"}}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json;odata=minimalmetadata")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def table_endpoint(world):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TableService)
    context = world.ca.server_context()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _TableService.seen = []
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_identity_based_storage_signs_in_with_the_administrators_token_and_names_the_role_when_refused(
    world, mi_env, fake_az, table_endpoint, monkeypatch
):
    env = {k: v for k, v in mi_env.items() if k != "AzureWebJobsStorage"}
    env["AzureWebJobsStorage__tableServiceUri"] = table_endpoint
    for name, value in fake_az.items():
        monkeypatch.setenv(name, value)
    _TableService.status = 201
    storage = next(c for c in run_doctor(env) if c.name.startswith("storage"))
    assert storage.ok, storage.line()
    assert f"identity-based ({table_endpoint}, managed identity, no account key)" in storage.name
    assert _TableService.seen and all(h.startswith("Bearer emu.") for h in _TableService.seen)  # no SharedKey
    _TableService.status = 403
    storage = next(c for c in run_doctor(env) if c.name.startswith("storage"))
    assert storage.failed and "give your account Storage Table Data Contributor" in storage.fix, storage.line()


@pytest.fixture()
def env_secret(world, azurite):
    return world.app_settings(
        {"ROUTING_API_KEY": "test-routing-key-0123456789", "AzureWebJobsStorage": azurite.connection_string}
    )


def test_failure_kind_of_a_refused_credential():
    from azure.core.exceptions import ClientAuthenticationError

    assert failure_kind(ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")) == SIGN_IN
    assert failure_kind(ssl.SSLCertVerificationError("certificate verify failed")) == "tls"
    assert failure_kind(ConnectionRefusedError(111, "Connection refused")) == UNREACHABLE
