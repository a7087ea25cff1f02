"""AzureWebJobsStorage read as the Functions host reads it: a connection string (Azurite, local runs)
or identity-based storage (``__accountName`` / ``__tableServiceUri``, the managed identity)."""

from __future__ import annotations

import uuid

import pytest

from bridge.settings import SettingsError, load_settings
from core.state import CheckpointStore
from core.storage_config import StorageConfig, parse_storage, table_service


def _parse(values: dict[str, str]) -> tuple[StorageConfig, list[str]]:
    problems: list[str] = []
    config = parse_storage(lambda name: values.get(name) or None, problems)
    return config, problems


def test_an_account_name_gives_the_table_endpoint_and_the_system_assigned_identity():
    config, problems = _parse({"AzureWebJobsStorage__accountName": "contosoenreach"})
    assert problems == [] and config.identity_based and config.connection_string is None
    assert config.table_service_uri == "https://contosoenreach.table.core.windows.net" and config.client_id is None
    assert config.describe() == (
        "identity-based (https://contosoenreach.table.core.windows.net, managed identity, no account key)"
    )


def test_a_table_service_uri_and_a_user_assigned_identity():
    config, problems = _parse(
        {
            "AzureWebJobsStorage__tableServiceUri": "https://contoso.table.core.windows.net/",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "11111111-2222-4333-8444-555555555555",
        }
    )
    assert problems == [] and config.table_service_uri == "https://contoso.table.core.windows.net"
    assert config.client_id == "11111111-2222-4333-8444-555555555555"
    assert "user-assigned managed identity 11111111" in config.describe()


def test_a_connection_string_wins_as_the_hosts_exact_match_does_and_its_key_is_never_shown():
    key = "c2VjcmV0LWtleS1vZi10aGUtYWNjb3VudA=="
    config, problems = _parse(
        {
            "AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey={key}",
            "AzureWebJobsStorage__accountName": "other",
        }
    )
    assert problems == [] and not config.identity_based
    assert config.describe() == "connection string (account contoso, with a key)"
    assert key not in repr(config)
    assert _parse({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})[0].describe() == (
        "connection string (Azurite, UseDevelopmentStorage=true)"
    )


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({}, "AzureWebJobsStorage is not set"),
        ({"AzureWebJobsStorage__accountName": "Contoso_Storage"}, "AzureWebJobsStorage__accountName must be"),
        ({"AzureWebJobsStorage__tableServiceUri": "contoso.table"}, "__tableServiceUri must be an absolute URL"),
        ({"AzureWebJobsStorage__tableServiceUri": "http://contoso.table.core.windows.net"}, "must use https"),
        (
            {"AzureWebJobsStorage__accountName": "contoso", "AzureWebJobsStorage__credential": "secret"},
            "__credential must be managedidentity",
        ),
        (
            {"AzureWebJobsStorage__accountName": "contoso", "AzureWebJobsStorage__clientId": "my-identity"},
            "__clientId must be the client id",
        ),
    ],
)
def test_each_malformed_storage_setting_is_named(values, named):
    _, problems = _parse(values)
    assert len(problems) == 1 and named in problems[0], problems


def test_the_settings_carry_identity_based_storage_without_a_connection_string(world):
    env = world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"})
    env.pop("AzureWebJobsStorage")
    with pytest.raises(SettingsError, match="AzureWebJobsStorage__accountName for identity-based storage"):
        load_settings(env)
    settings = load_settings({**env, "AzureWebJobsStorage__accountName": "contosoenreach"})
    assert settings.storage.identity_based and settings.storage_connection_string == ""


def test_identity_based_storage_builds_a_token_client_with_the_managed_identity():
    from azure.data.tables import TableServiceClient
    from azure.identity import ManagedIdentityCredential

    config = StorageConfig(
        table_service_uri="https://contosoenreach.table.core.windows.net",
        client_id="11111111-2222-4333-8444-555555555555",
    )
    service = table_service(config)
    assert isinstance(service, TableServiceClient)
    assert service.url.startswith("https://contosoenreach.table.core.windows.net")
    assert isinstance(service.credential, ManagedIdentityCredential)  # a token, not a key

    class Administrator:
        def get_token(self, *scopes: str, **options: object) -> object:
            raise AssertionError("not called before a request")

    passed = Administrator()
    assert table_service(config, credential=passed).credential is passed  # the ops commands' sign-in


def test_azurite_still_runs_with_a_connection_string(azurite):
    config = StorageConfig(connection_string=azurite.connection_string)
    service = table_service(config)
    assert service.credential is not None and service.credential.named_key.name == "devstoreaccount1"
    store = CheckpointStore(config, table_name="s" + uuid.uuid4().hex[:12])
    first = store.read("job")
    moved = store.write("job", "2026-12-01T00:00:00Z", expected=first)
    assert store.read("job") == moved and moved.value == "2026-12-01T00:00:00Z"
