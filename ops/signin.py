"""Whose sign-in the operator commands (``python -m ops provision|doctor``) use.

The app itself signs in as the settings say (``dataverse.credential_from_config``). A managed
identity exists only inside Azure, so when the settings name one (no client secret, no
certificate) the commands, run on an administrator's machine, take the administrator's own
sign-in instead, in this order (``--sign-in auto``, the default):

1. the settings' app registration, when they have a client secret or certificate (``app``);
2. the Azure CLI's login (``az login``; ``cli``): no prompt, works in Cloud Shell and pipelines;
3. a device code (``device-code``): a code to enter at the sign-in page, in a terminal only.

``--sign-in app`` forces the settings' credential (e.g. on an Azure VM that has the managed
identity). docs/deployment.md lists the Dataverse and Azure roles the administrator needs.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from bridge.settings import Settings

__all__ = ["SIGN_IN_CHOICES", "SignIn", "SignInUnavailable", "ops_sign_in"]

SIGN_IN_CHOICES = ("auto", "app", "cli", "device-code")


class SignInUnavailable(Exception):
    """No sign-in is possible here; ``fix`` says what to do."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(cause)
        self.cause, self.fix = cause, fix


@dataclass(frozen=True)
class SignIn:
    credential: TokenCredential
    kind: str  # client_secret | certificate | managed_identity | azure_cli | device_code

    @property
    def administrator(self) -> bool:
        """The administrator's own account (not the app's identity)."""
        return self.kind in ("azure_cli", "device_code")

    def describe(self) -> str:
        return {
            "client_secret": "app registration, client secret",
            "certificate": "app registration, certificate",
            "managed_identity": "the app's managed identity",
            "azure_cli": "your Azure CLI sign-in (az login)",
            "device_code": "your sign-in with a device code",
        }[self.kind]


def ops_sign_in(
    settings: Settings,
    *,
    choice: str = "auto",
    interactive: bool | None = None,
    which: Callable[[str], str | None] = shutil.which,
    prompt: Callable[[str], None] | None = None,
) -> SignIn:
    """The credential for an operator command (see the module's docstring for the order)."""
    from dataverse import credential_from_config

    if choice not in SIGN_IN_CHOICES:
        raise ValueError(f"--sign-in must be one of {', '.join(SIGN_IN_CHOICES)}")
    kind = settings.dataverse.credential_kind
    if choice == "app" or (choice == "auto" and kind != "managed_identity"):
        return SignIn(credential_from_config(settings.dataverse), kind)
    if interactive is None:
        interactive = sys.stdin.isatty()
    if choice == "cli" or (choice == "auto" and which("az")):
        return SignIn(_cli(settings), "azure_cli")
    if choice == "device-code" or interactive:
        return SignIn(_device_code(settings, prompt), "device_code")
    raise SignInUnavailable(
        "the settings name a managed identity, which exists only inside Azure; here there is no Azure CLI "
        "and no terminal for a device code",
        "install the Azure CLI and run az login as a Dataverse administrator, or run this command in a terminal "
        "(--sign-in device-code); docs/deployment.md lists the roles you need",
    )


class _WithoutClaims:
    """The Azure CLI refuses a claims challenge (it wants an interactive ``az login --claims-challenge``);
    the Dataverse client sends one after a 401 only to bypass MSAL's cache, which the CLI does not
    share, so a plain request gets the CLI's current token and a second 401 is reported as such."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    def get_token(self, *scopes: str, claims: str | None = None, **kwargs: Any) -> Any:
        return self._credential.get_token(*scopes, **kwargs)


def _cli(settings: Settings) -> TokenCredential:
    from azure.identity import AzureCliCredential

    options: dict[str, Any] = {}
    if settings.dataverse.tenant_id:
        options["tenant_id"] = settings.dataverse.tenant_id
    credential: TokenCredential = _WithoutClaims(AzureCliCredential(**options))
    return credential


def _device_code(settings: Settings, prompt: Callable[[str], None] | None) -> TokenCredential:
    from azure.identity import DeviceCodeCredential

    def show(verification_uri: str, user_code: str, expires_on: Any) -> None:
        text = f"To sign in, open {verification_uri} and enter the code {user_code}"
        (prompt or (lambda line: print(line, file=sys.stderr, flush=True)))(text)

    options: dict[str, Any] = {"prompt_callback": show, "tenant_id": settings.dataverse.tenant_id or "organizations"}
    if settings.dataverse.authority_host:
        options.update(authority=settings.dataverse.authority_host, disable_instance_discovery=True)
    return DeviceCodeCredential(**options)  # the Azure CLI's public client id: nothing to register
