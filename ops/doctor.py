"""``python -m ops doctor``: check a deployment's settings end to end, one line per check.

Each line says ok or PROBLEM and, for a problem, how to fix it. Exit status: 2 when a setting
is missing, malformed or still a placeholder copied from ``local.settings.sample.json`` (then
nothing else is tried), 1 when any other check failed, 0 when all passed. Run it after filling
in ``local.settings.json`` (values are read from the environment; ``python -m ops doctor
--settings local.settings.json`` reads the file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.settings import SETTING_NAMES, Settings, SettingsError, load_settings
from core.schema import CALL_SYNC, PHONE_INDEX

__all__ = ["PRIVILEGES", "Check", "exit_code", "placeholders", "run_doctor"]

_SETTINGS_FIX = "set it in local.settings.json or the Function App's Configuration"

# What the application user's security role must grant (Dataverse privilege names).
PRIVILEGES = {
    "prvReadContact": "read contacts (routing, call sync)",
    "prvReadAccount": "read accounts (routing, call sync)",
    "prvReadLead": "read leads (routing, call sync)",
    "prvReadIncident": "read cases (open-case routing)",
    "prvReadUser": "read users (owners, Enreach ids)",
    "prvWriteUser": "write users (Enreach user id sync)",
    "prvCreateActivity": "create phone calls (call sync)",
    "prvWriteActivity": "complete phone calls (call sync)",
    "prvAppendActivity": "link phone calls to customers (call sync)",
    "prvAppendToContact": "be the regarding of phone calls",
    "prvAppendToAccount": "be the regarding of phone calls",
    "prvAppendToLead": "be the regarding of phone calls",
    "prvReadmsdyn_presence": "read Omnichannel presences (presence sync)",
    "prvReadmsdyn_agentstatus": "read agent status (presence sync)",
    **{
        f"prv{verb}{PHONE_INDEX.logical_name}": f"{verb.lower()} phone index rows (phone index job, routing)"
        for verb in ("Create", "Read", "Write", "Delete", "Append")
    },
    "prvActOnBehalfOfAnotherUser": "act on behalf of another user (presence sync sets presence as the agent, "
    "MSCRMCallerID)",
    # the Enreach Bridge app's tables (issue 19): rows read, their enr_error written, run status upserted
    **{
        f"prv{verb}{table}": f"{verb.lower()} {label}"
        for table, label in (
            ("enr_bridgesetting", "setting rows (configuration, enr_error)"),
            ("enr_routingrule", "routing rule rows (configuration, enr_error)"),
        )
        for verb in ("Read", "Write")
    },
    **{
        f"prv{verb}enr_bridgerun": f"{verb.lower()} run status rows (every timer run)"
        for verb in ("Create", "Read", "Write")
    },
}

# What local.settings.sample.json holds where a deployment's own value belongs.
_PLACEHOLDER = re.compile(
    r"<[^>]*>"  # <client secret of the app registration ...>
    r"|^0{8}-0{4}-0{4}-0{4}-0{12}$"  # the all-zero GUID
    r"|(^|[/.@])contoso\.",  # contoso.crm4.dynamics.com, api.user@contoso.com
    re.IGNORECASE,
)


def placeholders(environ: Mapping[str, str]) -> list[str]:
    """The settings still holding a placeholder from local.settings.sample.json."""
    return [name for name in SETTING_NAMES if _PLACEHOLDER.search(environ.get(name) or "")]


def exit_code(checks: list[Check]) -> int:
    """2 when a settings check failed (nothing else was tried), 1 when another check failed, else 0."""
    if any(not c.ok and c.name == "settings" for c in checks):
        return 2
    return 1 if any(not c.ok for c in checks) else 0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""

    def line(self) -> str:
        text = f"{'ok     ' if self.ok else 'PROBLEM'} {self.name}"
        if self.detail:
            text += f": {self.detail}"
        if not self.ok and self.fix:
            text += f"\n        fix: {self.fix}"
        return text


def _attempt(name: str, action: Callable[[], str], fix: str) -> Check:
    try:
        return Check(name, True, action())
    except Exception as error:
        message = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        return Check(name, False, f"{type(error).__name__}: {message}", fix)


def run_doctor(environ: Mapping[str, str] | None = None) -> list[Check]:
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    try:
        settings = load_settings(environ)
    except SettingsError as error:
        problems = list(error.problems)
    problems += [
        f"{name} still holds the placeholder from local.settings.sample.json" for name in placeholders(environ)
    ]
    if problems:
        return [Check("settings", False, problem, _SETTINGS_FIX) for problem in problems]
    checks = [
        Check(
            "settings",
            True,
            f"every setting of the enabled jobs ({', '.join(sorted(settings.jobs))}) present and well-formed, "
            "no placeholder left",
        )
    ]
    checks += _dataverse_checks(settings)
    if settings.has("enreach"):
        checks.append(
            _attempt(
                "Enreach API (discovery and credentials)",
                lambda: _enreach(settings),
                "check ENREACH_USER (the API user's e-mail) and ENREACH_SECRET_KEY; ENREACH_API_URL skips discovery",
            )
        )
        if checks[-1].ok and settings.has("call_sync"):
            checks.append(_enreach_mapping(settings))
    if settings.has("routing"):
        checks.append(
            Check(
                "routing webhook authentication",
                True,
                "X-Benemen-APIKey (ROUTING_API_KEY)" if settings.routing.api_key else "HTTP Basic (ROUTING_BASIC_USER)",
            )
        )
    checks.append(
        _attempt(
            "storage (AzureWebJobsStorage)",
            lambda: _storage(settings),
            "check the connection string; the storage account must allow the Function App's network",
        )
    )
    return checks


def _client(settings: Settings) -> Any:
    from core.retry import RetryPolicy
    from dataverse import DataverseClient, credential_from_config

    return DataverseClient(
        settings.dataverse.url,
        credential=credential_from_config(settings.dataverse),
        timeout=settings.dataverse.timeout,
        retry=RetryPolicy(max_attempts=2),
    )


def _dataverse_checks(settings: Settings) -> list[Check]:
    from dataverse import credential_from_config

    credential = credential_from_config(settings.dataverse)
    token = _attempt(
        f"token for {settings.dataverse.scope} ({settings.dataverse.credential_kind.replace('_', ' ')})",
        lambda: (credential.get_token(settings.dataverse.scope), "acquired")[1],
        "check AZURE_TENANT_ID, AZURE_CLIENT_ID and the secret/certificate of the app registration "
        "(secrets expire: make a new one under Certificates & secrets)",
    )
    if not token.ok:
        return [token]
    client = _client(settings)
    whoami = _attempt(
        "Dataverse WhoAmI (application user)",
        lambda: f"user {client.whoami()['UserId']}",
        "add an application user for AZURE_CLIENT_ID in the Power Platform admin center, enabled, with "
        "the bridge's security role",
    )
    checks = [token, whoami]
    if not whoami.ok:
        return checks
    user_id = client.whoami()["UserId"]
    missing = [name for name in PRIVILEGES if not _has_privilege(client, user_id, name)]
    checks.append(
        Check(
            "security role privileges",
            not missing,
            "all granted" if not missing else "missing " + ", ".join(f"{m} ({PRIVILEGES[m]})" for m in missing),
            "add the missing table privileges (organization level) to the application user's security role",
        )
    )
    from ops.provision import REQUIRED, metadata

    found = [(item, metadata(client, item)) for item in REQUIRED]
    absent = [item.describe() for item, meta in found if meta is None]
    checks.append(
        Check(
            "provisioned schema (columns, keys, phone index)",
            not absent,
            "all present" if not absent else "missing " + ", ".join(absent),
            "run: python -m ops provision",
        )
    )
    checks.append(_app_check(client))
    keys = {
        item.describe(): str(meta.get("EntityKeyIndexStatus")) for item, meta in found if meta and item.kind == "key"
    }
    if keys:
        checks.append(_key_status(keys))
    if settings.has("callbacks") and settings.callbacks.queues:
        checks.append(
            _attempt(
                "callback queues (CALLBACK_QUEUES)",
                lambda: _callback_queues(client, user_id, dict(settings.callbacks.queues)),
                "set CALLBACK_QUEUES to existing queue ids (Settings > Queues) and grant the application user's "
                "role Create Queue Item and Append To Queue",
            )
        )
    if not absent:
        checks.append(
            _attempt(
                "users mapped to Enreach ids",
                lambda: _mapped_users(client),
                "run sync_enreach_user_ids (python -m call_sync users)",
            )
        )
        checks.append(
            _attempt(
                "phone index filled",
                lambda: _index_rows(client),
                "run sync_phone_index (python -m routing index --full)",
            )
        )
    return checks


def _app_check(client: Any) -> Check:
    """The Enreach Bridge app (published, with its site map) and the calls-for-review view."""
    from ops.app import check_app

    name = "Enreach Bridge app and calls-for-review view"
    try:
        missing = check_app(client)
    except Exception as error:
        return Check(name, False, f"{type(error).__name__}: {str(error)[:200]}", "run: python -m ops provision")
    return Check(
        name,
        not missing,
        "present and published" if not missing else "missing " + ", ".join(missing),
        "run: python -m ops provision",
    )


def _key_status(statuses: dict[str, str]) -> Check:
    """Alternate keys are built asynchronously: Pending/InProgress for a while, Failed when duplicates block them."""
    by_status: dict[str, list[str]] = {}
    for name, status in statuses.items():
        by_status.setdefault(status, []).append(name.removeprefix("key "))
    detail = "; ".join(f"{status}: {', '.join(names)}" for status, names in sorted(by_status.items()))
    failed = [s for s in by_status if s not in ("Active", "Pending", "InProgress")]
    if failed:
        fix = (
            "a key that Failed usually meets duplicate values: remove the duplicates, then Reactivate the key "
            "(make.powerapps.com > Tables > the table > Keys)"
        )
    else:
        fix = "Dataverse is still building the key index (minutes on large tables): run the doctor again later"
    return Check("alternate keys", set(by_status) == {"Active"}, detail, fix)


def _has_privilege(client: Any, user_id: str, name: str) -> bool:
    path = f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivilegeByPrivilegeName(PrivilegeName='{name}')"
    return bool(client.request("GET", path).json().get("RolePrivileges"))


def _mapped_users(client: Any) -> str:
    from dataverse import filters as f

    rows = list(client.query("systemusers", select=["systemuserid"], filter=f.ne(CALL_SYNC.user_id_column, None)))
    if not rows:
        raise LookupError("no user has an Enreach user id yet")
    return f"{len(rows)} users"


def _callback_queues(client: Any, user_id: str, queues: dict[str, str]) -> str:
    """Each queue CALLBACK_QUEUES names exists, and the app may put phone calls in it."""
    missing = [
        f"{name} -> {queue}"
        for name, queue in queues.items()
        if client.get("queues", queue, select=["queueid"]) is None
    ]
    if missing:
        raise LookupError("no such queue: " + ", ".join(missing))
    denied = [p for p in ("prvCreateQueueItem", "prvAppendToQueue") if not _has_privilege(client, user_id, p)]
    if denied:
        raise PermissionError("the role lacks " + ", ".join(denied))
    return f"{len(set(queues.values()))} queues found"


def _index_rows(client: Any) -> str:
    page = client.query_page(PHONE_INDEX.entity_set, select=[PHONE_INDEX.key_column], top=1)
    if not page.records:
        raise LookupError("the phone index is empty")
    return "has rows"


def _enreach(settings: Settings) -> str:
    from core.retry import RetryPolicy
    from enreach import client_from_config

    client = client_from_config(settings.enreach, retry=RetryPolicy(max_attempts=2))
    me = client.me()
    return f"authenticated as {me.email or me.id} at {client.api_url}"


def _enreach_mapping(settings: Settings) -> Check:
    """The probe's checks in brief: do real records carry the mapped Enreach names?"""
    from core.retry import RetryPolicy
    from enreach import client_from_config

    from .probe import probe_enreach

    name = "Enreach field mapping (3 days of real records)"
    try:
        result = probe_enreach(
            client_from_config(settings.enreach, retry=RetryPolicy(max_attempts=2)),
            days=3,
            duration_limit_seconds=settings.call_sync.duration_limit_seconds,
            out=lambda line: None,
        )
    except Exception as error:
        return Check(name, False, f"{type(error).__name__}: {str(error)[:300]}", "run python -m ops probe-enreach")
    if result.ok:
        return Check(name, True, result.verdict().removeprefix("probe: ok: "))
    return Check(
        name,
        False,
        "; ".join(result.problems),
        "run python -m ops probe-enreach for the details, then set ENREACH_FIELD_MAP (README, The Enreach mapping)",
    )


def _storage(settings: Settings) -> str:
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(settings.storage_connection_string)
    service.create_table_if_not_exists("bridgecheckpoints")
    return "Table storage reachable"
