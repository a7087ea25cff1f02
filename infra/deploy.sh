#!/usr/bin/env bash
# Create (or bring up to date) the Azure resources of the Enreach <-> Dataverse bridge with the
# Azure CLI (2.60+): a resource group, a storage account, a Function App on the Flex Consumption
# plan (Python 3.13 by default, with Application Insights, which `az functionapp create` makes),
# one always-ready instance for the HTTP functions (the SmartRouting webhook must answer within
# Enreach's 5 s), a system-assigned managed identity, a Key Vault holding every secret (read by
# the identity as "Key Vault Secrets User" through @Microsoft.KeyVault(...) app settings), the app
# settings, and inbound access restricted to Enreach's ranges, Dataverse's service tag and the
# ranges you add. Then publish with the Core Tools.
#
# Idempotent: every step looks first and changes only what is missing or different, so a second
# run changes nothing; generated keys (routing, presence) are created once and kept, because
# Enreach and the Dataverse webhook already hold them. No secret is ever printed or put on a
# command line.
#
# NOT RUN against Azure on the project's build machine (it has no Azure access); tests run every
# `az` line of it through the real CLI's argument parser and replay it against a recorded state
# (tests/test_deploy.py, with AZ pointing at a recorder). Read it before you run it.
#
# Usage: RG=enreach-bridge LOCATION=swedencentral APP=contoso-enreach-bridge STORAGE=contosoenreach \
#        DATAVERSE_URL=https://contoso.crm4.dynamics.com ENREACH_USER=api@contoso.com \
#        ENREACH_SECRET_KEY=... bash infra/deploy.sh
# Optional: KEYVAULT (default: the first 21 characters of APP + "-kv"), PYTHON_VERSION (default
# 3.13), PHONE_DEFAULT_REGION (FI), DATAVERSE_SERVICE_TAG (PowerPlatformPlex; docs/deployment.md
# says which to use), EXTRA_ALLOWED_RANGES="a.b.c.d/n ..." (your admins), AZ (the az executable).
# ENREACH_SECRET_KEY is needed on the first run only (afterwards it is in the Key Vault; set it
# again to rotate it).
set -euo pipefail
AZ=${AZ:-az}
: "${RG:?set RG (resource group)}" "${LOCATION:?set LOCATION (a Flex Consumption region)}"
: "${APP:?set APP (globally unique Function App name)}" "${STORAGE:?set STORAGE (3-24 lower-case letters/digits)}"
: "${DATAVERSE_URL:?set DATAVERSE_URL (https://<org>.crm<n>.dynamics.com)}" "${ENREACH_USER:?set ENREACH_USER}"
KEYVAULT=${KEYVAULT:-${APP:0:21}-kv}
PYTHON_VERSION=${PYTHON_VERSION:-3.13}
PHONE_DEFAULT_REGION=${PHONE_DEFAULT_REGION:-FI}
DATAVERSE_SERVICE_TAG=${DATAVERSE_SERVICE_TAG:-PowerPlatformPlex}
ENREACH_RANGES="80.88.186.0/24 80.88.187.0/24"
changes=0
step() { echo "== $*"; }
changed() {
  echo "   $*"
  changes=$((changes + 1))
}

step "resource group $RG"
if [ "$("$AZ" group exists --name "$RG")" != "true" ]; then
  "$AZ" group create --name "$RG" --location "$LOCATION" --output none
  changed "created"
fi

step "storage account $STORAGE"
if ! "$AZ" storage account show --name "$STORAGE" --resource-group "$RG" --query id --output tsv >/dev/null 2>&1; then
  "$AZ" storage account create --name "$STORAGE" --resource-group "$RG" --location "$LOCATION" \
    --sku Standard_LRS --allow-blob-public-access false --min-tls-version TLS1_2 --output none
  changed "created"
fi

step "function app $APP (Flex Consumption, Python $PYTHON_VERSION)"
if ! "$AZ" functionapp show --name "$APP" --resource-group "$RG" --query id --output tsv >/dev/null 2>&1; then
  "$AZ" functionapp create --resource-group "$RG" --name "$APP" --storage-account "$STORAGE" \
    --flexconsumption-location "$LOCATION" --runtime python --runtime-version "$PYTHON_VERSION" --output none
  changed "created"
fi
ready=$("$AZ" functionapp scale config show --name "$APP" --resource-group "$RG" \
  --query "alwaysReady[?name=='http'].instanceCount | [0]" --output tsv)
if [ "$ready" != "1" ]; then
  "$AZ" functionapp scale config always-ready set --resource-group "$RG" --name "$APP" --settings http=1 --output none
  changed "one always-ready instance for the HTTP functions"
fi
PRINCIPAL=$("$AZ" functionapp identity show --name "$APP" --resource-group "$RG" --query principalId --output tsv \
  2>/dev/null || true)
if [ -z "$PRINCIPAL" ]; then
  PRINCIPAL=$("$AZ" functionapp identity assign --name "$APP" --resource-group "$RG" --query principalId --output tsv)
  changed "system-assigned identity $PRINCIPAL"
fi

step "key vault $KEYVAULT"
VAULT_ID=$("$AZ" keyvault show --name "$KEYVAULT" --resource-group "$RG" --query id --output tsv 2>/dev/null || true)
if [ -z "$VAULT_ID" ]; then
  VAULT_ID=$("$AZ" keyvault create --name "$KEYVAULT" --resource-group "$RG" --location "$LOCATION" \
    --enable-rbac-authorization true --query id --output tsv)
  changed "created (RBAC authorization)"
fi
grant() { # principal, principal type, role
  local count
  count=$("$AZ" role assignment list --assignee "$1" --role "$3" --scope "$VAULT_ID" --query "length(@)" --output tsv)
  if [ "$count" = "0" ]; then
    "$AZ" role assignment create --assignee-object-id "$1" --assignee-principal-type "$2" --role "$3" \
      --scope "$VAULT_ID" --output none
    changed "$3 for $1"
  fi
}
grant "$PRINCIPAL" ServicePrincipal "Key Vault Secrets User" # the app reads its secrets
ME=$("$AZ" ad signed-in-user show --query id --output tsv 2>/dev/null || true)
if [ -n "$ME" ]; then
  grant "$ME" User "Key Vault Secrets Officer" # you write them (role assignments can take a minute to apply)
else
  echo "   signed in as a service principal: give it Key Vault Secrets Officer on $KEYVAULT yourself" >&2
fi

secret_file=$(mktemp)
trap 'rm -f "$secret_file"' EXIT
chmod 600 "$secret_file"
put_secret() { # name, value: through a file, so the value is never on a command line
  printf '%s' "$2" >"$secret_file"
  "$AZ" keyvault secret set --vault-name "$KEYVAULT" --name "$1" --file "$secret_file" --encoding utf-8 --output none
  : >"$secret_file"
}
secret_value() {
  "$AZ" keyvault secret show --vault-name "$KEYVAULT" --name "$1" --query value --output tsv 2>/dev/null || true
}
for generated in routing-api-key presence-webhook-key; do
  if [ -z "$(secret_value "$generated")" ]; then # created once, then kept: Enreach and Dataverse hold them
    put_secret "$generated" "$(openssl rand -base64 30 | tr -d '/+=' | cut -c1-32)"
    changed "secret $generated generated"
  fi
done
current=$(secret_value enreach-secret-key)
if [ -n "${ENREACH_SECRET_KEY:-}" ] && [ "$ENREACH_SECRET_KEY" != "$current" ]; then
  put_secret enreach-secret-key "$ENREACH_SECRET_KEY"
  if [ -n "$current" ]; then changed "secret enreach-secret-key rotated"; else changed "secret enreach-secret-key stored"; fi
elif [ -z "$current" ]; then
  echo "set ENREACH_SECRET_KEY (the Enreach API user's secret key) for the first run" >&2
  exit 2
fi
unset current

step "app settings"
ref() { printf '@Microsoft.KeyVault(VaultName=%s;SecretName=%s)' "$KEYVAULT" "$1"; }
desired=(
  "FUNCTIONS_EXTENSION_VERSION=~4"
  "DATAVERSE_URL=$DATAVERSE_URL"
  "ENREACH_USER=$ENREACH_USER"
  "ENREACH_SECRET_KEY=$(ref enreach-secret-key)"
  "ROUTING_API_KEY=$(ref routing-api-key)"
  "PRESENCE_WEBHOOK_KEY=$(ref presence-webhook-key)"
  "PHONE_DEFAULT_REGION=$PHONE_DEFAULT_REGION"
  "PHONE_INDEX_SCHEDULE=0 */5 * * * *"
  "PHONE_CALL_SYNC_SCHEDULE=0 */5 * * * *"
  "USER_ID_SYNC_SCHEDULE=0 0 * * * *"
  "PRESENCE_RECONCILE_SCHEDULE=0 */5 * * * *"
  "PRESENCE_POLL_SCHEDULE=0 */2 * * * *"
)
# With a client secret instead of the managed identity, also set AZURE_TENANT_ID, AZURE_CLIENT_ID
# and AZURE_CLIENT_SECRET as a Key Vault reference (put_secret azure-client-secret ..., then $(ref ...)).
existing=$("$AZ" functionapp config appsettings list --name "$APP" --resource-group "$RG" \
  --query "[].[name, value]" --output tsv) # name<TAB>value lines, kept in this variable only
missing=()
for setting in "${desired[@]}"; do
  grep -Fxq -- "${setting%%=*}"$'\t'"${setting#*=}" <<<"$existing" || missing+=("$setting")
done
unset existing
if [ "${#missing[@]}" -gt 0 ]; then
  "$AZ" functionapp config appsettings set --name "$APP" --resource-group "$RG" --settings "${missing[@]}" --output none
  changed "set ${missing[*]%%=*}"
fi

step "inbound access (Enreach ranges, Dataverse service tag $DATAVERSE_SERVICE_TAG, EXTRA_ALLOWED_RANGES)"
rules=$("$AZ" functionapp config access-restriction show --name "$APP" --resource-group "$RG" \
  --query "ipSecurityRestrictions[].name" --output tsv)
has_rule() { grep -Fxq -- "$1" <<<"$rules"; }
priority=100
for range in $ENREACH_RANGES ${EXTRA_ALLOWED_RANGES:-}; do
  name="allow-${range//[.\/]/-}"
  if ! has_rule "$name"; then
    "$AZ" functionapp config access-restriction add --name "$APP" --resource-group "$RG" \
      --rule-name "$name" --action Allow --ip-address "$range" --priority "$priority" --output none
    changed "allowed $range"
  fi
  priority=$((priority + 10))
done
if ! has_rule "allow-dataverse"; then
  "$AZ" functionapp config access-restriction add --name "$APP" --resource-group "$RG" \
    --rule-name allow-dataverse --action Allow --service-tag "$DATAVERSE_SERVICE_TAG" --priority 300 --output none
  changed "allowed service tag $DATAVERSE_SERVICE_TAG (Dataverse webhooks)"
fi

echo "== done: $changes change(s)"
echo "Managed identity principal id: $PRINCIPAL (the Dataverse application user is created for its application id)"
echo "Routing and presence keys are in Key Vault $KEYVAULT (secrets routing-api-key, presence-webhook-key):"
echo "  az keyvault secret show --vault-name $KEYVAULT --name routing-api-key --query value -o tsv"
echo "Next: func azure functionapp publish $APP   then   python -m ops doctor (with the same settings)"
