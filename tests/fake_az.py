"""A stand-in for the ``az`` executable that ``AzureCliCredential`` runs (``az account
get-access-token --output json --resource R [--tenant T]``): it gets a real token from the sandbox's
token service (loopback, client credentials of an "administrator" client the test registers) and
prints it the way the Azure CLI does. ``FAKE_AZ_MODE``: ``ok`` (default), ``logged-out`` (the CLI's
"Please run 'az login'" answer) or ``bogus-token`` (a token Dataverse does not know).

Environment: ``FAKE_AZ_TOKEN_URL``, ``FAKE_AZ_CLIENT_ID``, ``FAKE_AZ_SECRET``, ``REQUESTS_CA_BUNDLE``;
every call is appended to ``FAKE_AZ_LOG`` when set.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
from urllib.parse import urlencode
from urllib.request import Request, urlopen


def main(argv: list[str]) -> int:
    if os.environ.get("FAKE_AZ_LOG"):
        with open(os.environ["FAKE_AZ_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps(argv) + "\n")
    if argv[:2] != ["account", "get-access-token"] or "--resource" not in argv:
        print(f"ERROR: fake az knows only 'account get-access-token --resource', not {argv}", file=sys.stderr)
        return 2
    mode = os.environ.get("FAKE_AZ_MODE", "ok")
    if mode == "logged-out":
        print("ERROR: Please run 'az login' to setup account.", file=sys.stderr)
        return 1
    resource = argv[argv.index("--resource") + 1]
    if mode == "bogus-token":
        token, lifetime = "not-a-token-of-this-environment", 3600
    else:
        body = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": os.environ["FAKE_AZ_CLIENT_ID"],
                "client_secret": os.environ["FAKE_AZ_SECRET"],
                "scope": resource.rstrip("/") + "/.default",
            }
        ).encode()
        context = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
        with urlopen(Request(os.environ["FAKE_AZ_TOKEN_URL"], data=body), context=context, timeout=10) as answer:
            issued = json.loads(answer.read())
        token, lifetime = issued["access_token"], int(issued["expires_in"])
    expires = time.time() + lifetime
    print(
        json.dumps(
            {
                "accessToken": token,
                "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(expires)),
                "expires_on": int(expires),
                "subscription": "00000000-0000-0000-0000-0000000000aa",
                "tenant": "7e4b1c52-5f0a-4d47-9c55-0a1b2c3d4e5f",
                "tokenType": "Bearer",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
