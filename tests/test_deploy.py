"""infra/deploy.sh without Azure: replayed against a recorded state (a second run is a no-op, no
secret is printed), and every ``az`` call it makes checked by the real Azure CLI's argument parser.

The CLI is pip-installed once into a temp venv keyed by its version (minutes the first time, then
reused); when it cannot be installed the parser test is skipped and says why. Not logged in, the
CLI answers a well-formed command with "Please run 'az login'" (passes) and a malformed one with
an argument error (fails).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "infra" / "deploy.sh"
AZURE_CLI_VERSION = "2.91.0"
MUTATING = re.compile(r"\b(create|set|add|assign)\b")


def _deploy(tmp_path: Path, state: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    record = tmp_path / f"calls-{time.monotonic_ns()}.jsonl"
    az = tmp_path / "az"
    az.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "az_recorder.py"}" "$@"\n')
    az.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AZ": str(az),
        "AZ_STATE": str(state),
        "AZ_RECORD": str(record),
        "RG": "enreach-bridge",
        "LOCATION": "swedencentral",
        "APP": "contoso-enreach-bridge",
        "STORAGE": "contosoenreach",
        "DATAVERSE_URL": "https://contoso.crm4.dynamics.com",
        "ENREACH_USER": "api@contoso.com",
        **extra,
    }
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return result, calls


def _subcommand(call: list[str] | tuple[str, ...]) -> list[str]:
    """``["keyvault", "secret", "set"]``: the words before the first option."""
    words: list[str] = []
    for word in call:
        if word.startswith("-"):
            break
        words.append(word)
    return words


def _secrets(state: Path) -> dict[str, str]:
    return json.loads(state.read_text())["vaults"]["contoso-enreach-bridg-kv"]["secrets"]


@pytest.fixture()
def deployed(tmp_path):
    state = tmp_path / "state.json"
    first, calls = _deploy(tmp_path, state, ENREACH_SECRET_KEY="enreach-secret-0123456789")
    assert first.returncode == 0, first.stdout + first.stderr
    return state, first, calls


def test_first_run_creates_everything_with_secrets_in_key_vault_and_prints_none(deployed):
    state, first, calls = deployed
    app = json.loads(state.read_text())["apps"]["contoso-enreach-bridge"]
    secrets = _secrets(state)
    assert set(secrets) == {"routing-api-key", "presence-webhook-key", "enreach-secret-key"}
    assert len(secrets["routing-api-key"]) == 32 and secrets["routing-api-key"] != secrets["presence-webhook-key"]
    assert app["runtime"] == "3.13" and app["always_ready"] == 1
    assert app["settings"]["ENREACH_SECRET_KEY"] == (
        "@Microsoft.KeyVault(VaultName=contoso-enreach-bridg-kv;SecretName=enreach-secret-key)"
    )
    assert app["settings"]["ROUTING_API_KEY"].startswith("@Microsoft.KeyVault(") and app["settings"][
        "PRESENCE_WEBHOOK_KEY"
    ].startswith("@Microsoft.KeyVault(")
    # Flex Consumption sets the runtime itself; no account key left in the settings: identity-based storage
    assert "FUNCTIONS_EXTENSION_VERSION" not in app["settings"] and "AzureWebJobsStorage" not in app["settings"]
    assert not any("AccountKey=" in value for value in app["settings"].values())
    assert app["settings"]["AzureWebJobsStorage__accountName"] == "contosoenreach"
    assert app["deployment_storage_auth"] == "SystemAssignedIdentity"
    whole = json.loads(state.read_text())
    assert whole["shared_key"] == {"contosoenreach": False}
    roles = whole["roles"]
    assert [app["principal"], "Key Vault Secrets User", "/vaults/contoso-enreach-bridg-kv"] in roles
    for role in ("Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Table Data Contributor"):
        assert [app["principal"], role, "/storage/contosoenreach"] in roles  # what the host and the app need
    vault = whole["vaults"]["contoso-enreach-bridg-kv"]
    assert vault["purge_protection"] is True and vault.get("default_action", "Allow") == "Allow"
    rules = {r["name"]: r for r in app["rules"]}
    assert rules["allow-dataverse"]["service-tag"] == "PowerPlatformPlex"
    assert rules["allow-availability-tests"]["service-tag"] == "ApplicationInsightsAvailability"
    assert {r.get("ip-address") for r in rules.values()} >= {"80.88.186.0/24", "80.88.187.0/24"}
    assert app["scm_same_rules"] is True  # the SCM/Kudu site is behind the same rules
    monitoring = whole["deployments"]["enreach-bridge-monitoring"]
    assert monitoring["hostName"] == "contoso-enreach-bridge.azurewebsites.net"
    assert monitoring["workbookContent"]["version"] == "Notebook/1.0" and len(monitoring["contentHash"]) == 64
    assert "application id " in first.stdout and "--app-id" in first.stdout
    for value in secrets.values():
        assert value not in first.stdout + first.stderr
        assert all(value not in " ".join(call) for call in calls)  # never on a command line either


def test_a_second_run_against_the_recorded_state_is_a_no_op(deployed, tmp_path):
    state, _, _ = deployed
    before = state.read_text()
    again, calls = _deploy(tmp_path, state)  # no ENREACH_SECRET_KEY: it is in the vault now
    assert again.returncode == 0, again.stdout + again.stderr
    assert "== done: 0 change(s)" in again.stdout
    writes = [call for call in calls if MUTATING.search(" ".join(_subcommand(call)))]
    assert writes == [], writes
    assert state.read_text() == before  # the same keys: what Enreach and Dataverse hold stays valid


def test_a_changed_setting_and_a_new_range_are_all_a_rerun_changes(deployed, tmp_path):
    state, _, _ = deployed
    keys = _secrets(state)
    again, calls = _deploy(tmp_path, state, PHONE_DEFAULT_REGION="SE", EXTRA_ALLOWED_RANGES="203.0.113.0/24")
    assert again.returncode == 0, again.stderr
    assert "== done: 2 change(s)" in again.stdout, again.stdout
    set_call = next(c for c in calls if c[:4] == ["functionapp", "config", "appsettings", "set"])
    assert [a for a in set_call if "=" in a and not a.startswith("--")] == ["PHONE_DEFAULT_REGION=SE"]
    assert _secrets(state) == keys


def test_the_webhook_secret_and_the_basic_password_go_to_key_vault_and_stay_referenced(deployed, tmp_path):
    state, _, _ = deployed
    given = {
        "ENREACH_WEBHOOK_SECRET": "enreach-webhook-secret-0123456789",
        "ROUTING_BASIC_USER": "enreach",
        "ROUTING_BASIC_PASSWORD": "basic-password-0123456789",
    }
    run, calls = _deploy(tmp_path, state, **given)
    assert run.returncode == 0, run.stdout + run.stderr
    secrets = _secrets(state)
    assert secrets["enreach-webhook-secret"] == given["ENREACH_WEBHOOK_SECRET"]
    assert secrets["routing-basic-password"] == given["ROUTING_BASIC_PASSWORD"]
    settings = json.loads(state.read_text())["apps"]["contoso-enreach-bridge"]["settings"]
    assert settings["ENREACH_WEBHOOK_SECRET"] == (
        "@Microsoft.KeyVault(VaultName=contoso-enreach-bridg-kv;SecretName=enreach-webhook-secret)"
    )
    assert settings["ROUTING_BASIC_PASSWORD"].endswith("SecretName=routing-basic-password)")
    assert settings["ROUTING_BASIC_USER"] == "enreach"
    for value in (given["ENREACH_WEBHOOK_SECRET"], given["ROUTING_BASIC_PASSWORD"]):
        assert value not in run.stdout + run.stderr and all(value not in " ".join(c) for c in calls)
    again, _ = _deploy(tmp_path, state, ROUTING_BASIC_USER="enreach")  # the secrets are in the vault now
    assert "== done: 0 change(s)" in again.stdout, again.stdout
    refused, _ = _deploy(tmp_path, state, ROUTING_BASIC_PASSWORD="basic-password-0123456789")
    assert refused.returncode == 2 and "ROUTING_BASIC_USER" in refused.stderr


def _legacy(state: Path) -> None:
    """What an older deploy.sh left: the account key in AzureWebJobsStorage, FUNCTIONS_EXTENSION_VERSION,
    shared keys on, a vault without purge protection, no identity, the SCM site open."""
    whole = json.loads(state.read_text())
    app = whole["apps"]["contoso-enreach-bridge"]
    app.pop("principal")
    app["deployment_storage_auth"] = "StorageAccountConnectionString"
    app["settings"]["DEPLOYMENT_STORAGE_CONNECTION_STRING"] = "DefaultEndpointsProtocol=https;AccountKey=S2V5IQ=="
    app["settings"].update(
        AzureWebJobsStorage="DefaultEndpointsProtocol=https;AccountName=contosoenreach;AccountKey=S2V5IQ==",
        FUNCTIONS_EXTENSION_VERSION="~4",
    )
    app["settings"].pop("AzureWebJobsStorage__accountName")
    app["scm_same_rules"] = False
    whole["shared_key"] = {"contosoenreach": True}
    whole["vaults"]["contoso-enreach-bridg-kv"]["purge_protection"] = False
    state.write_text(json.dumps(whole))


def test_a_deployment_made_by_the_older_script_loses_its_keys_on_the_next_run(deployed, tmp_path):
    state, _, _ = deployed
    _legacy(state)
    run, _ = _deploy(tmp_path, state)
    assert run.returncode == 0, run.stdout + run.stderr
    whole = json.loads(state.read_text())
    app = whole["apps"]["contoso-enreach-bridge"]
    assert "AzureWebJobsStorage" not in app["settings"] and "FUNCTIONS_EXTENSION_VERSION" not in app["settings"]
    assert app["settings"]["AzureWebJobsStorage__accountName"] == "contosoenreach" and app["principal"]
    assert whole["shared_key"] == {"contosoenreach": False} and app["scm_same_rules"] is True
    assert whole["vaults"]["contoso-enreach-bridg-kv"]["purge_protection"] is True
    assert "removed AzureWebJobsStorage DEPLOYMENT_STORAGE_CONNECTION_STRING FUNCTIONS_EXTENSION_VERSION" in run.stdout
    assert app["deployment_storage_auth"] == "SystemAssignedIdentity"
    assert not any("AccountKey=" in value for value in app["settings"].values())
    # the new identity is granted the vault and the storage roles before the settings use it
    assert [app["principal"], "Storage Table Data Contributor", "/storage/contosoenreach"] in whole["roles"]


def test_with_the_apps_subnet_the_vault_denies_other_networks(deployed, tmp_path):
    state, _, _ = deployed
    subnet = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/app"
    run, _ = _deploy(tmp_path, state, VAULT_SUBNET_ID=subnet, EXTRA_ALLOWED_RANGES="203.0.113.0/24")
    assert run.returncode == 0, run.stdout + run.stderr
    vault = json.loads(state.read_text())["vaults"]["contoso-enreach-bridg-kv"]
    assert vault["network_rules"] == [subnet, "203.0.113.0/24"]
    assert (vault["default_action"], vault["bypass"]) == ("Deny", "AzureServices")
    again, _ = _deploy(tmp_path, state, VAULT_SUBNET_ID=subnet, EXTRA_ALLOWED_RANGES="203.0.113.0/24")
    assert "== done: 0 change(s)" in again.stdout, again.stdout


def test_every_alert_has_a_runbook_line_and_reads_the_emitted_telemetry_names():
    template = json.loads((ROOT / "infra" / "monitoring.json").read_text())
    guide = (ROOT / "docs" / "deployment.md").read_text()
    troubleshooting = guide[guide.index("## Troubleshooting") :]
    alerts = [
        r
        for r in template["resources"]
        if r["type"] in ("Microsoft.Insights/scheduledQueryRules", "Microsoft.Insights/metricAlerts")
    ]
    keys = [re.search(r"\{0\}-([a-z0-9-]+)'", r["name"]).group(1) for r in alerts]
    assert sorted(keys) == sorted(
        ["timer-failed", "timer-missing", "parked-growing", "parked-old", "routing-fallback", "presence-503", "health"]
    )
    for key in keys:
        assert f"`{key}`" in troubleshooting, f"alert {key} has no runbook line in docs/deployment.md"
    queries = json.dumps(template)
    for name in ("bridge.routing.decisions", "fallback_failure", "fallback_budget", "bridge.presence.refused"):
        assert name in queries
    assert "parked_oldest_age_s" in queries and "sync_phone_calls" in queries
    workbook = (ROOT / "infra" / "workbook.json").read_text()
    for name in (
        "bridge.routing.decisions",
        "bridge.routing.duration",
        "bridge.calls",
        "bridge.presence.writes",
        "bridge.presence.echoes_dropped",
        "bridge.presence.refused",
        "bridge.throttled",
        "parked_oldest_age_s",
        "availabilityResults",
    ):
        assert name in workbook, name


def test_the_first_run_without_the_enreach_key_stops_with_exit_2(tmp_path):
    result, _ = _deploy(tmp_path, tmp_path / "state.json")
    assert result.returncode == 2 and "ENREACH_SECRET_KEY" in result.stderr


# -- the real Azure CLI's parser -----------------------------------------------------------------


def _azure_cli() -> Path:
    """A venv with azure-cli, cached in the temp dir across runs (keyed by the CLI version)."""
    home = Path(tempfile.gettempdir()) / f"enreach-bridge-azure-cli-{AZURE_CLI_VERSION}"
    python = home / "bin" / "python"
    if (home / ".complete").exists():
        return python
    building = Path(tempfile.mkdtemp(prefix="azure-cli-", dir=tempfile.gettempdir()))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, capture_output=True, timeout=300)
        installed = subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet", f"azure-cli=={AZURE_CLI_VERSION}"],
            capture_output=True,
            text=True,
            timeout=1500,
        )
        if installed.returncode != 0:
            tail = (installed.stderr or installed.stdout).strip().splitlines()[-1:]
            pytest.skip(f"azure-cli {AZURE_CLI_VERSION} could not be installed here: {' '.join(tail)[:300]}")
        (building / ".complete").touch()
        shutil.rmtree(home, ignore_errors=True)
        building.rename(home)  # the venv's python still finds its packages after the move (python -m)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"azure-cli {AZURE_CLI_VERSION} could not be installed here: {error}")
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return python


ARGUMENT_ERRORS = ("unrecognized arguments", "the following arguments are required", "invalid choice", "expected one")


def test_every_az_call_of_the_script_parses_under_the_real_azure_cli(tmp_path):
    state = tmp_path / "state.json"
    first, calls = _deploy(tmp_path, state, ENREACH_SECRET_KEY="enreach-secret-0123456789")
    again, more = _deploy(
        tmp_path,
        state,
        EXTRA_ALLOWED_RANGES="203.0.113.0/24",
        ENREACH_SECRET_KEY="rotated-key",
        ENREACH_WEBHOOK_SECRET="enreach-webhook-secret-0123456789",
        ROUTING_BASIC_USER="enreach",
        ROUTING_BASIC_PASSWORD="basic-password-0123456789",
        VAULT_SUBNET_ID="/subscriptions/s/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v/subnets/a",
        ALERT_EMAIL="ops@example.com",
    )
    _legacy(state)
    upgraded, rest = _deploy(tmp_path, state)
    assert first.returncode == 0 and again.returncode == 0 and upgraded.returncode == 0, first.stderr + again.stderr
    distinct = {tuple(call) for call in calls + more + rest}
    used = {" ".join(_subcommand(call)) for call in distinct}
    in_script = {" ".join(_subcommand(m.split())) for m in re.findall(r'"\$AZ" ([a-z -]+)', SCRIPT.read_text())}
    assert len(in_script) >= 20 and in_script <= used, in_script - used  # every az line of the script ran
    python = _azure_cli()
    config = tmp_path / "azure-config"
    env = {
        "PATH": "/usr/bin:/bin",
        "AZURE_CONFIG_DIR": str(config),  # empty: not logged in
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_EXTENSION_USE_DYNAMIC_INSTALL": "no",
        "AZURE_CORE_NO_COLOR": "true",
    }

    def parse(call: tuple[str, ...]) -> tuple[tuple[str, ...], int, str]:
        args = [("/dev/null" if a.startswith(str(Path(tempfile.gettempdir()))) and "tmp" in a else a) for a in call]
        run = subprocess.run(
            [str(python), "-m", "azure.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )
        return call, run.returncode, run.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(parse, sorted(distinct)))
    for call, code, stderr in results:
        assert not any(e in stderr for e in ARGUMENT_ERRORS), f"az {' '.join(call)}\n{stderr}"
        assert code != 2 and "az login" in stderr, f"az {' '.join(call)}: exit {code}\n{stderr}"
