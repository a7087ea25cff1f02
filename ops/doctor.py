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
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.settings import SETTING_NAMES, Settings, SettingsError, load_settings
from core.schema import CALL_SYNC, PHONE_INDEX

if TYPE_CHECKING:
    from .signin import SignIn

__all__ = ["PRIVILEGES", "Check", "exit_code", "failure_kind", "placeholders", "run_doctor", "token_fix"]

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
    if any(c.failed and c.name == "settings" for c in checks):
        return 2
    return 1 if any(c.failed for c in checks) else 0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    skipped: bool = False  # not tried because an earlier check failed (``detail`` says which)

    @property
    def failed(self) -> bool:
        return not self.ok and not self.skipped

    def line(self) -> str:
        label = "skipped" if self.skipped else ("ok     " if self.ok else "PROBLEM")
        text = f"{label} {self.name}"
        if self.detail:
            text += f": {self.detail}"
        if self.failed and self.fix:
            text += f"\n        fix: {self.fix}"
        return text


def _skipped(names: list[str], because: str) -> list[Check]:
    return [Check(name, False, f"not tried: {because}", skipped=True) for name in names]


# -- failure kinds: the fix depends on what failed, not only on which check ----------------------

UNREACHABLE, TLS, SIGN_IN, FORBIDDEN, OTHER = "unreachable", "tls", "sign_in", "forbidden", "other"
_UNREACHABLE_TEXT = (
    "connection refused",
    "name or service not known",
    "nodename nor servname",
    "temporary failure in name resolution",
    "failed to resolve",
    "getaddrinfo failed",
    "failed to establish a new connection",
    "no route to host",
    "network is unreachable",
    "timed out",
)


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def failure_kind(error: BaseException) -> str:
    """``unreachable`` (refused, unknown host, timeout), ``tls``, ``sign_in`` (credential refused or
    missing), ``forbidden`` (signed in, not allowed) or ``other``."""
    import socket

    import requests

    from dataverse import AuthenticationFailed, Forbidden, TokenUnavailable
    from enreach import EnreachAuthError

    chain = _chain(error)
    texts = " | ".join(str(e) for e in chain).lower()
    if "certificate verify failed" in texts or "certificate_verify_failed" in texts:
        return TLS
    for item in chain:
        if isinstance(item, socket.gaierror | ConnectionError | TimeoutError | requests.ConnectionError):
            return UNREACHABLE
        if isinstance(item, requests.Timeout):
            return UNREACHABLE
    if any(text in texts for text in _UNREACHABLE_TEXT):
        return UNREACHABLE
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    from dataverse import DataverseError
    from enreach import EnreachError

    for item in chain:
        if isinstance(item, ServiceRequestError):
            return UNREACHABLE
        if isinstance(item, TokenUnavailable):
            return SIGN_IN  # its transport failures were classified above, by their text or cause
        if isinstance(item, DataverseError | EnreachError) and getattr(item, "status", None) == 0:
            return UNREACHABLE  # no HTTP answer at all: refused, unknown host or timed out
        if isinstance(item, Forbidden):
            return FORBIDDEN
        if isinstance(item, AuthenticationFailed | EnreachAuthError | TokenUnavailable | ClientAuthenticationError):
            return SIGN_IN
        if type(item).__name__ == "CredentialUnavailableError":
            return SIGN_IN
        if isinstance(item, HttpResponseError) and item.status_code == 403:
            return FORBIDDEN
        if isinstance(item, HttpResponseError) and item.status_code == 401:
            return SIGN_IN
    return OTHER


def _detail(error: BaseException) -> str:
    message = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    return f"{type(error).__name__}: {message}"


def _attempt(name: str, action: Callable[[], str], fix: Callable[[str], str] | str) -> Check:
    """Run one check; on failure the fix is chosen by the failure's kind (``fix(kind)``)."""
    try:
        return Check(name, True, action())
    except Exception as error:
        kind = failure_kind(error)
        return Check(name, False, _detail(error), fix(kind) if callable(fix) else fix)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


_TLS_FIX = (
    "the server's certificate is not trusted here: check REQUESTS_CA_BUNDLE (a company TLS proxy needs its CA in it)"
)


def run_doctor(
    environ: Mapping[str, str] | None = None, *, sign_in: str = "auto", app_id: str | None = None, **options: Any
) -> list[Check]:
    """Every check, in order; ``sign_in`` chooses whose sign-in reaches Dataverse and identity-based
    storage (``ops.signin``: with a managed identity in the settings, the administrator's own);
    ``app_id`` is the application id of the app's identity, whose Dataverse application user the
    doctor then checks (needed with a system-assigned managed identity). ``options`` go to
    ``ops_sign_in`` (tests)."""
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
    from .signin import SignInUnavailable, ops_sign_in

    try:
        signed_in: SignIn | None = ops_sign_in(settings, choice=sign_in, **options)
    except SignInUnavailable as error:
        checks.append(Check("sign-in", False, error.cause, error.fix))
        signed_in = None
    checks += _dataverse_checks(settings, signed_in, app_id)
    if settings.has("enreach"):
        enreach = _attempt(
            "Enreach API (discovery and credentials)", lambda: _enreach(settings), _enreach_fix(settings)
        )
        checks.append(enreach)
        if enreach.ok and settings.has("call_sync"):
            checks.append(_enreach_mapping(settings))
        elif settings.has("call_sync"):
            checks += _skipped(["Enreach field mapping (3 days of real records)"], "the Enreach API check failed")
    if settings.has("routing"):
        checks.append(
            Check(
                "routing webhook authentication",
                True,
                "X-Benemen-APIKey (ROUTING_API_KEY)" if settings.routing.api_key else "HTTP Basic (ROUTING_BASIC_USER)",
            )
        )
    checks.append(_storage_check(settings, signed_in))
    return checks


def _client(settings: Settings, credential: Any) -> Any:
    from core.retry import RetryPolicy
    from dataverse import DataverseClient

    return DataverseClient(
        settings.dataverse.url,
        credential=credential,
        timeout=settings.dataverse.timeout,
        retry=RetryPolicy(max_attempts=2),
    )


_AFTER_TOKEN = [
    "Dataverse WhoAmI",
    "security role privileges",
    "provisioned schema (columns, keys, phone index)",
    "users mapped to Enreach ids",
    "phone index filled",
]


def token_fix(settings: Settings, signed_in: SignIn) -> Callable[[str], str]:
    authority = settings.dataverse.authority_host or "https://login.microsoftonline.com"

    def fix(kind: str) -> str:
        if kind == TLS:
            return _TLS_FIX
        if kind == UNREACHABLE:
            return (
                f"cannot reach the sign-in service ({_host(authority)}): check DNS, the network and a proxy "
                "(HTTPS_PROXY); AZURE_AUTHORITY_HOST only for a sovereign cloud"
            )
        if signed_in.kind == "azure_cli":
            tenant = f" --tenant {settings.dataverse.tenant_id}" if settings.dataverse.tenant_id else ""
            return (
                f"sign in to the Azure CLI as a Dataverse administrator: az login{tenant} (or run with "
                "--sign-in device-code)"
            )
        if signed_in.kind == "device_code":
            return "finish the device code sign-in within 15 minutes, with an account of the environment's tenant"
        if signed_in.kind == "managed_identity":
            return (
                "the managed identity exists only inside Azure: on your machine run without --sign-in app (your "
                "az login is used); in Azure, turn the Function App's identity on (infra/deploy.sh does)"
            )
        if signed_in.kind == "certificate":
            return (
                "check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_CERTIFICATE_PATH (a PEM with the private "
                "key, whose certificate is uploaded under Certificates & secrets and not expired)"
            )
        return (
            "check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, the app registration's client secret "
            "(secrets expire: make a new one under Certificates & secrets)"
        )

    return fix


def _whoami_fix(settings: Settings, signed_in: SignIn) -> Callable[[str], str]:
    def fix(kind: str) -> str:
        if kind == TLS:
            return _TLS_FIX
        if kind == UNREACHABLE:
            return (
                f"cannot reach {_host(settings.dataverse.url)}: check DATAVERSE_URL (make.powerapps.com > Settings "
                "> Session details > Instance url), DNS and the network"
            )
        if kind in (SIGN_IN, FORBIDDEN) and signed_in.administrator:
            return (
                "your account is not an enabled user of this environment: sign in as one with the System "
                "Administrator role (docs/deployment.md, step 4), and check DATAVERSE_URL names the right environment"
            )
        if kind in (SIGN_IN, FORBIDDEN):
            who = "the managed identity's application id" if signed_in.kind == "managed_identity" else "AZURE_CLIENT_ID"
            return (
                f"add an application user for {who} in the Power Platform admin center, enabled, with "
                "the bridge's security role; check DATAVERSE_URL names the right environment"
            )
        return "Dataverse answered with an error: check DATAVERSE_URL and the service health, then run again"

    return fix


def _dataverse_checks(settings: Settings, signed_in: SignIn | None, app_id: str | None) -> list[Check]:
    if signed_in is None:
        return _skipped(["token for " + settings.dataverse.scope, *_AFTER_TOKEN], "no sign-in")
    credential = signed_in.credential
    token = _attempt(
        f"token for {settings.dataverse.scope} ({signed_in.describe()})",
        lambda: (credential.get_token(settings.dataverse.scope), "acquired")[1],
        token_fix(settings, signed_in),
    )
    if not token.ok:
        return [token, *_skipped(_AFTER_TOKEN, "no token")]
    client = _client(settings, credential)
    whoami = _attempt(
        "Dataverse WhoAmI (administrator)" if signed_in.administrator else "Dataverse WhoAmI (application user)",
        lambda: f"user {client.whoami()['UserId']}",
        _whoami_fix(settings, signed_in),
    )
    checks = [token, whoami]
    if not whoami.ok:
        return checks + _skipped(_AFTER_TOKEN[1:], "Dataverse WhoAmI failed")
    checks.append(_privileges(settings, signed_in, client, app_id))
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
        user_id = client.whoami()["UserId"]
        checks.append(
            _attempt(
                "callback queues (CALLBACK_QUEUES)",
                lambda: _callback_queues(client, user_id, dict(settings.callbacks.queues)),
                "set CALLBACK_QUEUES to existing queue ids (Settings > Queues) and grant the application user's "
                "role Create Queue Item and Append To Queue",
            )
        )
    if absent:
        return checks + _skipped(_AFTER_TOKEN[3:], "the schema is not provisioned")
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


def _privileges(settings: Settings, signed_in: SignIn, client: Any, app_id: str | None) -> Check:
    """The application user's privileges: the signed-in app's own, or (signed in as the administrator)
    the application user of ``app_id`` / the user-assigned identity's AZURE_CLIENT_ID."""
    name = "security role privileges"
    fix = "add the missing table privileges (organization level) to the application user's security role"
    if signed_in.administrator:
        app = app_id or settings.dataverse.client_id
        if not app:
            return Check(
                name,
                False,
                "not tried: signed in as yourself, the app's system-assigned identity has no application id in "
                "the settings",
                skipped=True,
            )
        from dataverse import filters as f

        try:
            rows = list(
                client.query("systemusers", select=["systemuserid"], filter=f.eq("applicationid", uuid.UUID(app)))
            )
        except Exception as error:
            return Check(name, False, _detail(error), "run again with --debug and report it")
        if not rows:
            return Check(
                name,
                False,
                f"no application user for application id {app}",
                "add an application user for the managed identity's application id in the Power Platform admin "
                "center (docs/deployment.md, step 2), enabled, with the bridge's security role",
            )
        user_id = str(rows[0]["systemuserid"])
        name += f" (application user {app})"
    else:
        user_id = client.whoami()["UserId"]
    try:
        missing = [p for p in PRIVILEGES if not _has_privilege(client, user_id, p)]
    except Exception as error:
        return Check(name, False, _detail(error), "run again with --debug and report it")
    return Check(
        name,
        not missing,
        "all granted" if not missing else "missing " + ", ".join(f"{m} ({PRIVILEGES[m]})" for m in missing),
        fix,
    )


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


def _enreach_fix(settings: Settings) -> Callable[[str], str]:
    where = settings.enreach.api_url or settings.enreach.discovery_url

    def fix(kind: str) -> str:
        if kind == TLS:
            return _TLS_FIX
        if kind == UNREACHABLE:
            return (
                f"cannot reach Enreach ({_host(where)}): check ENREACH_API_URL / ENREACH_DISCOVERY_URL, DNS and "
                "outbound network (the credentials were not tried)"
            )
        if kind == SIGN_IN:
            return "check ENREACH_USER (the API user's e-mail) and ENREACH_SECRET_KEY (its secret key, not a password)"
        return "check ENREACH_USER and ENREACH_API_URL (it skips discovery); then run python -m ops probe-enreach"

    return fix


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


def _storage_check(settings: Settings, signed_in: SignIn | None) -> Check:
    config = settings.storage
    name = f"storage (AzureWebJobsStorage: {config.describe()})"
    credential = None
    if config.identity_based:
        if signed_in is None:
            return Check(name, False, "not tried: no sign-in", skipped=True)
        credential = signed_in.credential  # yours on your machine; the app's own inside Azure

    def fix(kind: str) -> str:
        if kind == TLS:
            return _TLS_FIX
        if kind == UNREACHABLE:
            return (
                "cannot reach the storage account: check its name, and its network rules (infra/deploy.sh "
                "allows the Function App only: add your address with az storage account network-rule add)"
            )
        if not config.identity_based:
            if kind == FORBIDDEN:
                return (
                    "the account refuses its key (shared key access is off, as deploy.sh sets it): use "
                    "AzureWebJobsStorage__accountName instead of the connection string"
                )
            return "check the connection string (copy it again from the storage account's Access keys)"
        if kind in (SIGN_IN, FORBIDDEN):
            who = "your account" if signed_in and signed_in.administrator else "the app's managed identity"
            return (
                f"give {who} Storage Table Data Contributor on the storage account (role assignments take a few "
                "minutes to apply)"
            )
        return "check AzureWebJobsStorage__accountName / __tableServiceUri"

    return _attempt(name, lambda: _storage(settings, credential), fix)


def _storage(settings: Settings, credential: Any) -> str:
    from core.storage_config import table_service

    service = table_service(settings.storage, credential=credential, retry_total=1)
    service.create_table_if_not_exists("bridgecheckpoints")
    return "Table storage reachable"
