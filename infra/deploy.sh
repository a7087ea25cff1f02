#!/usr/bin/env bash
# Create the Azure resources of the Enreach <-> Dataverse bridge with the Azure CLI (2.60+):
# a resource group, a storage account, a Function App on the Flex Consumption plan (Python 3.11,
# with Application Insights, which `az functionapp create` makes), one always-ready instance for
# the HTTP functions (the SmartRouting webhook must answer within Enreach's 5 s), a
# system-assigned managed identity, the app settings, and inbound access restricted to Enreach's
# ranges plus the ranges you add. Then publish with the Core Tools.
#
# NOT RUN on the project's build machine (it has no Azure access): read it before you run it.
# Usage: RG=enreach-bridge LOCATION=swedencentral APP=contoso-enreach-bridge STORAGE=contosoenreach \
#        DATAVERSE_URL=https://contoso.crm4.dynamics.com ENREACH_USER=api@contoso.com \
#        ENREACH_SECRET_KEY=... bash infra/deploy.sh
set -euo pipefail
: "${RG:?set RG (resource group)}" "${LOCATION:?set LOCATION (a Flex Consumption region)}"
: "${APP:?set APP (globally unique Function App name)}" "${STORAGE:?set STORAGE (3-24 lower-case letters/digits)}"
: "${DATAVERSE_URL:?}" "${ENREACH_USER:?}" "${ENREACH_SECRET_KEY:?}"
PHONE_DEFAULT_REGION=${PHONE_DEFAULT_REGION:-FI}

az group create --name "$RG" --location "$LOCATION"
az storage account create --name "$STORAGE" --resource-group "$RG" --location "$LOCATION" \
  --sku Standard_LRS --allow-blob-public-access false --min-tls-version TLS1_2
az functionapp create --resource-group "$RG" --name "$APP" --storage-account "$STORAGE" \
  --flexconsumption-location "$LOCATION" --runtime python --runtime-version 3.11
az functionapp scale config always-ready set --resource-group "$RG" --name "$APP" --settings http=1
PRINCIPAL=$(az functionapp identity assign --resource-group "$RG" --name "$APP" --query principalId -o tsv)
echo "Managed identity principal id: $PRINCIPAL (its application id is what the Dataverse application user needs)"

ROUTING_API_KEY=$(openssl rand -base64 30 | tr -d '/+=' | cut -c1-32)
PRESENCE_WEBHOOK_KEY=$(openssl rand -base64 30 | tr -d '/+=' | cut -c1-32)
az functionapp config appsettings set --resource-group "$RG" --name "$APP" --settings \
  "DATAVERSE_URL=$DATAVERSE_URL" \
  "ENREACH_USER=$ENREACH_USER" "ENREACH_SECRET_KEY=$ENREACH_SECRET_KEY" \
  "ROUTING_API_KEY=$ROUTING_API_KEY" "PRESENCE_WEBHOOK_KEY=$PRESENCE_WEBHOOK_KEY" \
  "PHONE_DEFAULT_REGION=$PHONE_DEFAULT_REGION" \
  "PHONE_INDEX_SCHEDULE=0 */5 * * * *" "PHONE_CALL_SYNC_SCHEDULE=0 */5 * * * *" \
  "USER_ID_SYNC_SCHEDULE=0 0 * * * *" "PRESENCE_RECONCILE_SCHEDULE=0 */5 * * * *" \
  "PRESENCE_POLL_SCHEDULE=0 */2 * * * *" >/dev/null
# With a client secret instead of the managed identity, also set AZURE_TENANT_ID, AZURE_CLIENT_ID
# and AZURE_CLIENT_SECRET (better: a Key Vault reference, @Microsoft.KeyVault(SecretUri=...)).

# Inbound: Enreach calls from 80.88.186.0/24 and 80.88.187.0/24. Restrictions apply to the whole
# app, so also allow whoever else calls it: the Dataverse webhook for presence sync (your
# environment's outbound ranges, EXTRA_ALLOWED_RANGES="a.b.c.d/n ...") and your admins.
priority=100
for range in 80.88.186.0/24 80.88.187.0/24 ${EXTRA_ALLOWED_RANGES:-}; do
  az functionapp config access-restriction add --resource-group "$RG" --name "$APP" \
    --rule-name "allow-$priority" --action Allow --ip-address "$range" --priority "$priority" >/dev/null
  priority=$((priority + 10))
done

echo "Routing API key (give it to Enreach as X-Benemen-APIKey): $ROUTING_API_KEY"
echo "Presence webhook key (X-Presence-Key of the Dataverse webhook): $PRESENCE_WEBHOOK_KEY"
echo "Next: func azure functionapp publish $APP   then   python -m ops doctor (with the same settings)"
