"""A stand-in for the ``az`` executable that infra/deploy.sh calls through ``AZ``: it records every
call (argv, one JSON line to ``AZ_RECORD``) and answers from a recorded state (``AZ_STATE``, JSON),
changing that state the way Azure would for the create/set/add/assign commands the script uses.

It knows exactly the commands the script uses, with the options it passes; anything else exits 2,
so a new ``az`` line in the script must be taught here (and is then checked against the real CLI's
parser by tests/test_deploy.py).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any


def _options(args: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    key = ""
    for arg in args:
        if arg.startswith("--"):
            key = arg
            found.setdefault(key, [])
        elif key:
            found[key].append(arg)
    return found


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["AZ_STATE"])
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    with open(os.environ["AZ_RECORD"], "a", encoding="utf-8") as record:
        record.write(json.dumps(argv) + "\n")
    o = {k: v[0] if len(v) == 1 else v for k, v in _options(argv).items()}
    groups = state.setdefault("groups", [])
    storage = state.setdefault("storage", [])
    apps = state.setdefault("apps", {})
    vaults = state.setdefault("vaults", {})
    roles = state.setdefault("roles", [])
    out: Any = None
    command = " ".join(argv)

    def missing(what: str) -> int:
        print(f"ERROR: (ResourceNotFound) {what} was not found.", file=sys.stderr)
        return 3

    if command.startswith("group exists"):
        out = "true" if o["--name"] in groups else "false"
    elif command.startswith("group create"):
        groups.append(o["--name"])
    elif command.startswith("storage account show"):
        if o["--name"] not in storage:
            return missing(o["--name"])
        if o["--query"] == "allowSharedKeyAccess":  # null (allowed) on a new account: tsv prints nothing
            shared = state.setdefault("shared_key", {}).get(o["--name"])
            out = "" if shared is None else str(shared).lower()
        else:
            out = f"/storage/{o['--name']}"
    elif command.startswith("storage account create"):
        storage.append(o["--name"])
    elif command.startswith("storage account update"):
        state.setdefault("shared_key", {})[o["--name"]] = o["--allow-shared-key-access"] == "true"
    elif command.startswith("functionapp show"):
        if o["--name"] not in apps:
            return missing(o["--name"])
        out = f"{o['--name']}.azurewebsites.net" if o["--query"] == "defaultHostName" else f"/sites/{o['--name']}"
    elif command.startswith("functionapp create"):
        # As the CLI does: the host's storage as a connection string with the account key, Application
        # Insights; with SystemAssignedIdentity for the deployment container, the identity turned on.
        account = o["--storage-account"]
        apps[o["--name"]] = {
            "runtime": o["--runtime-version"],
            "settings": {
                "AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey=S2V5IQ==",
                "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000001",
            },
            "rules": [],
            "always_ready": 0,
            "deployment_storage_auth": o.get("--deployment-storage-auth-type", "StorageAccountConnectionString"),
        }
        if apps[o["--name"]]["deployment_storage_auth"] == "SystemAssignedIdentity":
            apps[o["--name"]]["principal"] = str(uuid.uuid4())
    elif command.startswith("functionapp scale config show"):
        out = str(apps[o["--name"]]["always_ready"])
    elif command.startswith("functionapp scale config always-ready"):
        apps[o["--name"]]["always_ready"] = int(o["--settings"].split("=")[1])
    elif command.startswith("functionapp deployment config show"):
        out = apps[o["--name"]]["deployment_storage_auth"]
    elif command.startswith("functionapp deployment config set"):
        apps[o["--name"]]["deployment_storage_auth"] = o["--deployment-storage-auth-type"]
        if o["--deployment-storage-auth-type"] == "SystemAssignedIdentity":  # the CLI turns the identity on
            apps[o["--name"]].setdefault("principal", str(uuid.uuid4()))
    elif command.startswith("functionapp identity show"):
        out = apps[o["--name"]].get("principal", "")
    elif command.startswith("functionapp identity assign"):
        apps[o["--name"]]["principal"] = out = str(uuid.uuid4())
    elif command.startswith("keyvault show"):
        if o["--name"] not in vaults:
            return missing(o["--name"])
        vault = vaults[o["--name"]]
        out = {
            "id": vault["id"],
            "properties.enablePurgeProtection": "true" if vault.get("purge_protection") else "",
            "properties.networkAcls.defaultAction": vault.get("default_action", "Allow"),
        }[o["--query"]]
    elif command.startswith("keyvault create"):
        vaults[o["--name"]] = {
            "id": f"/vaults/{o['--name']}",
            "secrets": {},
            "rbac": o["--enable-rbac-authorization"],
            "purge_protection": o.get("--enable-purge-protection") == "true",
            "network_rules": [],
        }
        out = vaults[o["--name"]]["id"]
    elif command.startswith("keyvault update"):
        vault = vaults[o["--name"]]
        if "--enable-purge-protection" in o:
            vault["purge_protection"] = o["--enable-purge-protection"] == "true"
        if "--default-action" in o:
            vault["default_action"], vault["bypass"] = o["--default-action"], o["--bypass"]
    elif command.startswith("keyvault network-rule list"):
        out = "\n".join(vaults[o["--name"]].setdefault("network_rules", []))
    elif command.startswith("keyvault network-rule add"):
        vaults[o["--name"]].setdefault("network_rules", []).append(o.get("--subnet") or o["--ip-address"])
    elif command.startswith("role assignment list"):
        out = str(sum(1 for r in roles if r == [o["--assignee"], o["--role"], o["--scope"]]))
    elif command.startswith("role assignment create"):
        roles.append([o["--assignee-object-id"], o["--role"], o["--scope"]])
    elif command.startswith("ad signed-in-user show"):
        out = state.setdefault("me", str(uuid.uuid4()))
    elif command.startswith("ad sp show"):
        out = str(uuid.uuid5(uuid.NAMESPACE_URL, o["--id"]))  # the identity's application id
    elif command.startswith("keyvault secret show"):
        secrets = vaults[o["--vault-name"]]["secrets"]
        if o["--name"] not in secrets:
            return missing(o["--name"])
        out = secrets[o["--name"]]
    elif command.startswith("keyvault secret set"):
        assert "--value" not in o, "secrets go through --file, never the command line"
        vaults[o["--vault-name"]]["secrets"][o["--name"]] = Path(o["--file"]).read_text(encoding="utf-8")
    elif command.startswith("functionapp config appsettings list"):
        out = "\n".join(f"{k}\t{v}" for k, v in apps[o["--name"]]["settings"].items())
    elif command.startswith("functionapp config appsettings set"):
        values = o["--settings"] if isinstance(o["--settings"], list) else [o["--settings"]]
        apps[o["--name"]]["settings"].update(v.split("=", 1) for v in values)
    elif command.startswith("functionapp config appsettings delete"):
        names = o["--setting-names"] if isinstance(o["--setting-names"], list) else [o["--setting-names"]]
        for name in names:
            apps[o["--name"]]["settings"].pop(name, None)
    elif command.startswith("functionapp config access-restriction show"):
        if o["--query"] == "scmIpSecurityRestrictionsUseMain":
            out = str(apps[o["--name"]].get("scm_same_rules", False)).lower()
        else:
            out = "\n".join(rule["name"] for rule in apps[o["--name"]]["rules"])
    elif command.startswith("functionapp config access-restriction set"):
        apps[o["--name"]]["scm_same_rules"] = o["--use-same-restrictions-for-scm-site"] == "true"
    elif command.startswith("functionapp config access-restriction add"):
        rule = {k.lstrip("-"): v for k, v in o.items() if k not in ("--name", "--resource-group", "--output")}
        apps[o["--name"]]["rules"].append({"name": o["--rule-name"], **rule})
    elif command.startswith("deployment group show"):
        deployment = state.setdefault("deployments", {}).get(o["--name"])
        if deployment is None:
            return missing(o["--name"])
        out = deployment["contentHash"]
    elif command.startswith("deployment group create"):
        json.loads(Path(o["--template-file"]).read_text())  # a template that is not JSON fails as Azure would
        parameters: dict[str, Any] = {}
        for item in o["--parameters"] if isinstance(o["--parameters"], list) else [o["--parameters"]]:
            name, value = item.split("=", 1)
            parameters[name] = json.loads(Path(value[1:]).read_text()) if value.startswith("@") else value
        state.setdefault("deployments", {})[o["--name"]] = parameters
    else:
        print(f"ERROR: the recorder does not know: az {' '.join(argv)}", file=sys.stderr)
        return 2
    state_path.write_text(json.dumps(state, indent=1))
    if out is not None and o.get("--output") != "none":
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
