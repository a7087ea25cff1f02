#!/usr/bin/env bash
# Create (or bring up to date) the Azure resources of the Enreach <-> Dataverse bridge with the
# Azure CLI (2.60+): a resource group, a storage account, a Function App on the Flex Consumption
# plan (Python 3.13 by default, with Application Insights, which `az functionapp create` makes),
# one always-ready instance for the HTTP functions (the SmartRouting webhook must answer within
# Enreach's 5 s), a system-assigned managed identity, a Key Vault holding every secret (read by
# the identity as "Key Vault Secrets User" through @Microsoft.KeyVault(...) app settings; purge
# protection on), the app settings, storage without account keys (the host and the app reach it
# with the managed identity: AzureWebJobsStorage__accountName; shared key access off), inbound
# access (the app and its SCM/Kudu site) restricted to Enreach's ranges, Dataverse's service tag,
# the availability tests and the ranges you add, and the monitoring (infra/monitoring.json: the
# alerts, the /api/health availability test, the workbook infra/workbook.json). Then provision
# (python -m ops provision) and publish with the Core Tools (docs/deployment.md).
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
# says which to use), EXTRA_ALLOWED_RANGES="a.b.c.d/n ..." (your admins: they reach the app, its
# SCM site for publishing, and with VAULT_SUBNET_ID the vault), ALERT_EMAIL (who gets the alerts),
# ENREACH_WEBHOOK_SECRET (the Secret Enreach support set for /api/presence/enreach),
# ROUTING_BASIC_USER + ROUTING_BASIC_PASSWORD (if Enreach calls the routing webhook with Basic),
# VAULT_SUBNET_ID (the subnet the app is integrated with: the vault then denies every other network
# but EXTRA_ALLOWED_RANGES), AZ (the az executable).
# Secrets (ENREACH_SECRET_KEY, ENREACH_WEBHOOK_SECRET, ROUTING_BASIC_PASSWORD) are needed on the first
# run only: afterwards they are in the Key Vault (set one again to rotate it).
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
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
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
  # the deployment container is reached with the app's identity, not a connection string
  "$AZ" functionapp create --resource-group "$RG" --name "$APP" --storage-account "$STORAGE" \
    --flexconsumption-location "$LOCATION" --runtime python --runtime-version "$PYTHON_VERSION" \
    --deployment-storage-auth-type SystemAssignedIdentity --output none
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
deployment_auth=$("$AZ" functionapp deployment config show --name "$APP" --resource-group "$RG" \
  --query storage.authentication.type --output tsv)
if [ "$deployment_auth" != "SystemAssignedIdentity" ]; then # an app made with a connection string for it
  "$AZ" functionapp deployment config set --name "$APP" --resource-group "$RG" \
    --deployment-storage-auth-type SystemAssignedIdentity --output none
  changed "deployment container reached with the identity"
fi

step "key vault $KEYVAULT"
VAULT_ID=$("$AZ" keyvault show --name "$KEYVAULT" --resource-group "$RG" --query id --output tsv 2>/dev/null || true)
if [ -z "$VAULT_ID" ]; then
  VAULT_ID=$("$AZ" keyvault create --name "$KEYVAULT" --resource-group "$RG" --location "$LOCATION" \
    --enable-rbac-authorization true --enable-purge-protection true --retention-days 90 --query id --output tsv)
  changed "created (RBAC authorization, purge protection)"
fi
if [ "$("$AZ" keyvault show --name "$KEYVAULT" --resource-group "$RG" --query properties.enablePurgeProtection \
  --output tsv)" != "true" ]; then # cannot be turned off again: a deleted secret stays recoverable for 90 days
  "$AZ" keyvault update --name "$KEYVAULT" --resource-group "$RG" --enable-purge-protection true --output none
  changed "purge protection on"
fi
if [ -n "${VAULT_SUBNET_ID:-}" ]; then # only the app's subnet and your ranges reach the vault
  vault_rules=$("$AZ" keyvault network-rule list --name "$KEYVAULT" --resource-group "$RG" \
    --query "[virtualNetworkRules[].id, ipRules[].value][]" --output tsv)
  for rule in "$VAULT_SUBNET_ID" ${EXTRA_ALLOWED_RANGES:-}; do
    if ! grep -Fxiq -- "$rule" <<<"$vault_rules"; then
      if [ "$rule" = "$VAULT_SUBNET_ID" ]; then
        "$AZ" keyvault network-rule add --name "$KEYVAULT" --resource-group "$RG" --subnet "$rule" --output none
      else
        "$AZ" keyvault network-rule add --name "$KEYVAULT" --resource-group "$RG" --ip-address "$rule" --output none
      fi
      changed "vault allows $rule"
    fi
  done
  if [ "$("$AZ" keyvault show --name "$KEYVAULT" --resource-group "$RG" --query properties.networkAcls.defaultAction \
    --output tsv)" != "Deny" ]; then
    "$AZ" keyvault update --name "$KEYVAULT" --resource-group "$RG" --default-action Deny --bypass AzureServices \
      --output none
    changed "vault denies other networks"
  fi
fi
grant() { # principal, principal type, role[, scope (default: the vault)]
  local count scope=${4:-$VAULT_ID}
  count=$("$AZ" role assignment list --assignee "$1" --role "$3" --scope "$scope" --query "length(@)" --output tsv)
  if [ "$count" = "0" ]; then
    "$AZ" role assignment create --assignee-object-id "$1" --assignee-principal-type "$2" --role "$3" \
      --scope "$scope" --output none
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

step "storage roles (identity-based AzureWebJobsStorage: the host's blobs and queues, the app's tables)"
STORAGE_ID=$("$AZ" storage account show --name "$STORAGE" --resource-group "$RG" --query id --output tsv)
for role in "Storage Blob Data Owner" "Storage Queue Data Contributor" "Storage Table Data Contributor"; do
  grant "$PRINCIPAL" ServicePrincipal "$role" "$STORAGE_ID"
done
if [ -n "$ME" ]; then # python -m ops doctor reads the app's tables with your sign-in
  grant "$ME" User "Storage Table Data Contributor" "$STORAGE_ID"
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
optional_secrets=()
optional_secret() { # setting, secret name: stored when given (or rotated); referenced while in the vault
  local value=${!1:-} current
  current=$(secret_value "$2")
  if [ -n "$value" ] && [ "$value" != "$current" ]; then
    put_secret "$2" "$value"
    if [ -n "$current" ]; then changed "secret $2 rotated"; else changed "secret $2 stored"; fi
    current=stored
  fi
  if [ -n "$current" ]; then optional_secrets+=("$1=$(ref "$2")"); fi
}
ref() { printf '@Microsoft.KeyVault(VaultName=%s;SecretName=%s)' "$KEYVAULT" "$1"; }
optional_secret ENREACH_WEBHOOK_SECRET enreach-webhook-secret
if [ -n "${ROUTING_BASIC_PASSWORD:-}" ] && [ -z "${ROUTING_BASIC_USER:-}" ]; then
  echo "set ROUTING_BASIC_USER with ROUTING_BASIC_PASSWORD" >&2
  exit 2
fi
optional_secret ROUTING_BASIC_PASSWORD routing-basic-password
unset current

step "app settings"
# Flex Consumption sets the runtime version itself (FUNCTIONS_EXTENSION_VERSION is not an app setting
# there); storage is identity-based: no account key anywhere in the settings.
desired=(
  "AzureWebJobsStorage__accountName=$STORAGE"
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
  # One telemetry pipeline (host.json telemetryMode OpenTelemetry): the worker's exporter sends the
  # app's scrubbed logs and the host stops forwarding them (docs/deployment.md, telemetry).
  "PYTHON_ENABLE_OPENTELEMETRY=true"
  ${optional_secrets[@]+"${optional_secrets[@]}"}
)
if [ -n "${ROUTING_BASIC_USER:-}" ]; then desired+=("ROUTING_BASIC_USER=$ROUTING_BASIC_USER"); fi
# With a client secret instead of the managed identity, also set AZURE_TENANT_ID, AZURE_CLIENT_ID
# and AZURE_CLIENT_SECRET as a Key Vault reference (put_secret azure-client-secret ..., then $(ref ...)).
existing=$("$AZ" functionapp config appsettings list --name "$APP" --resource-group "$RG" \
  --query "[].[name, value]" --output tsv) # name<TAB>value lines, kept in this variable only
missing=()
for setting in "${desired[@]}"; do
  grep -Fxq -- "${setting%%=*}"$'\t'"${setting#*=}" <<<"$existing" || missing+=("$setting")
done
# The account key `az functionapp create` wrote, and settings Flex Consumption does not take.
stale=()
# PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY would make the worker export without the app's scrubbing.
for name in AzureWebJobsStorage DEPLOYMENT_STORAGE_CONNECTION_STRING FUNCTIONS_EXTENSION_VERSION \
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY; do
  if cut -f1 <<<"$existing" | grep -Fxq -- "$name"; then stale+=("$name"); fi
done
unset existing
if [ "${#missing[@]}" -gt 0 ]; then
  "$AZ" functionapp config appsettings set --name "$APP" --resource-group "$RG" --settings "${missing[@]}" --output none
  changed "set ${missing[*]%%=*}"
fi
if [ "${#stale[@]}" -gt 0 ]; then
  "$AZ" functionapp config appsettings delete --name "$APP" --resource-group "$RG" --setting-names "${stale[@]}" \
    --output none
  changed "removed ${stale[*]}"
fi

step "storage account $STORAGE: shared key access off (the state that decides DND is reached by identity only)"
if [ "$("$AZ" storage account show --name "$STORAGE" --resource-group "$RG" --query allowSharedKeyAccess \
  --output tsv)" != "false" ]; then
  "$AZ" storage account update --name "$STORAGE" --resource-group "$RG" --allow-shared-key-access false --output none
  changed "shared key access off"
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
if ! has_rule "allow-availability-tests"; then
  "$AZ" functionapp config access-restriction add --name "$APP" --resource-group "$RG" \
    --rule-name allow-availability-tests --action Allow --service-tag ApplicationInsightsAvailability --priority 310 \
    --output none
  changed "allowed service tag ApplicationInsightsAvailability (the /api/health availability test)"
fi
if [ "$("$AZ" functionapp config access-restriction show --name "$APP" --resource-group "$RG" \
  --query scmIpSecurityRestrictionsUseMain --output tsv)" != "true" ]; then
  "$AZ" functionapp config access-restriction set --name "$APP" --resource-group "$RG" \
    --use-same-restrictions-for-scm-site true --output none
  changed "SCM/Kudu site behind the same rules (publish from an EXTRA_ALLOWED_RANGES address)"
fi

step "monitoring: alerts, the /api/health availability test, the workbook (infra/monitoring.json)"
HOST=$("$AZ" functionapp show --name "$APP" --resource-group "$RG" --query defaultHostName --output tsv)
parameters=(
  "appName=$APP" "hostName=$HOST" "alertEmail=${ALERT_EMAIL:-}"
  "indexScheduleMinutes=5" "callSyncScheduleMinutes=5" "userSyncScheduleMinutes=60"
  "reconcileScheduleMinutes=5" "pollScheduleMinutes=2"
)
digest=$(printf '%s\n' "${parameters[@]}" | cat - "$HERE/monitoring.json" "$HERE/workbook.json" | openssl dgst -sha256 -r)
digest=${digest%% *}
deployed=$("$AZ" deployment group show --resource-group "$RG" --name enreach-bridge-monitoring \
  --query properties.parameters.contentHash.value --output tsv 2>/dev/null || true)
if [ "$deployed" != "$digest" ]; then # ARM deployments are incremental: a rerun updates in place
  "$AZ" deployment group create --resource-group "$RG" --name enreach-bridge-monitoring \
    --template-file "$HERE/monitoring.json" --parameters "${parameters[@]}" "contentHash=$digest" \
    "workbookContent=@$HERE/workbook.json" --output none
  changed "alerts, availability test and workbook deployed"
fi

echo "== done: $changes change(s)"
APP_ID=$("$AZ" ad sp show --id "$PRINCIPAL" --query appId --output tsv 2>/dev/null || true)
echo "Managed identity: principal id $PRINCIPAL, application id ${APP_ID:-(see Enterprise applications)}"
echo "  (the Dataverse application user is created for the application id; python -m ops doctor --app-id it)"
echo "Routing and presence keys are in Key Vault $KEYVAULT (secrets routing-api-key, presence-webhook-key):"
echo "  az keyvault secret show --vault-name $KEYVAULT --name routing-api-key --query value -o tsv"
echo "Next (docs/deployment.md): python -m ops provision, then func azure functionapp publish $APP, then"
echo "  python -m ops doctor --app-id <application id>   (both sign in as you: az login)"
