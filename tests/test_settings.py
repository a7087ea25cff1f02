"""The typed settings object: every problem is named, with how to fix it."""

from __future__ import annotations

import pytest

from bridge.settings import SettingsError, load_settings

GOOD = {
    "DATAVERSE_URL": "https://contoso.crm4.dynamics.com/",
    "AZURE_TENANT_ID": "7e4b1c52-5f0a-4d47-9c55-0a1b2c3d4e5f",
    "AZURE_CLIENT_ID": "5a1d0c4e-8b2f-4e61-a7d3-6f5e4d3c2b1a",
    "AZURE_CLIENT_SECRET": "s",
    "ENREACH_USER": "api@example.fi",
    "ENREACH_SECRET_KEY": "k",
    "ROUTING_API_KEY": "0123456789abcdef0123",
    "PHONE_DEFAULT_REGION": "fi",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "PHONE_INDEX_SCHEDULE": "0 */5 * * * *",
    "PHONE_CALL_SYNC_SCHEDULE": "0 */5 * * * *",
    "USER_ID_SYNC_SCHEDULE": "0 0 * * * *",
    "PRESENCE_RECONCILE_SCHEDULE": "0 */5 * * * *",
    "PRESENCE_POLL_SCHEDULE": "0 */2 * * * *",
    "PRESENCE_WEBHOOK_KEY": "presence-key-0123456789",
}


def test_complete_settings_load_with_defaults():
    settings = load_settings(GOOD)
    assert settings.dataverse.url == "https://contoso.crm4.dynamics.com"
    assert settings.dataverse.scope == "https://contoso.crm4.dynamics.com/.default"
    assert settings.matching.region == "FI"
    assert settings.dataverse.credential_kind == "client_secret"
    assert settings.enreach.discovery_url == "https://discover.enreachvoice.com"
    assert settings.dataverse.timeout == 10.0
    assert (settings.presence.max_call_minutes, settings.presence.after_call) == (240, "AVAILABLE")
    assert settings.presence.polling == "auto" and settings.presence_polling_enabled


def test_repr_never_shows_secrets():
    settings = load_settings(
        {**GOOD, "AZURE_CLIENT_SECRET": "very-secret-value", "ENREACH_SECRET_KEY": "enreach-key-xyz"}
    )
    assert "very-secret-value" not in repr(settings) and "enreach-key-xyz" not in repr(settings)


def test_every_missing_setting_is_named_at_once():
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    text = str(caught.value)
    for name in (
        "DATAVERSE_URL",
        "ENREACH_USER",
        "ENREACH_SECRET_KEY",
        "ROUTING_API_KEY",
        "PHONE_DEFAULT_REGION",
        "AzureWebJobsStorage",
    ):
        assert name in text
    assert "local.settings.json" in text


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"DATAVERSE_URL": "contoso.crm4.dynamics.com"}, "DATAVERSE_URL must be an absolute URL"),
        ({"DATAVERSE_URL": "http://contoso.crm4.dynamics.com"}, "DATAVERSE_URL must use https"),
        ({"DATAVERSE_URL": "https://contoso.crm4.dynamics.com/api/data/v9.2"}, "environment root"),
        ({"AZURE_CLIENT_ID": "my-app"}, "AZURE_CLIENT_ID must be a GUID"),
        ({"AZURE_TENANT_ID": ""}, "AZURE_TENANT_ID is not set"),
        ({"AZURE_CLIENT_CERTIFICATE_PATH": "/nope.pem"}, "only one of AZURE_CLIENT_SECRET"),
        ({"ENREACH_USER": "apiuser"}, "ENREACH_USER must be an e-mail"),
        ({"PHONE_DEFAULT_REGION": "XX"}, "PHONE_DEFAULT_REGION 'XX'"),
        ({"ROUTING_API_KEY": "short"}, "ROUTING_API_KEY is too short"),
        ({"ROUTING_API_KEY": "", "ROUTING_BASIC_USER": "enreach"}, "ROUTING_BASIC_PASSWORD"),
        ({"HTTP_TIMEOUT_SECONDS": "soon"}, "HTTP_TIMEOUT_SECONDS"),
        ({"PRESENCE_MAX_CALL_MINUTES": "0"}, "PRESENCE_MAX_CALL_MINUTES must be a whole number from 1 to 1440"),
        ({"PRESENCE_AFTER_CALL": "lunch"}, "PRESENCE_AFTER_CALL must be an Omnichannel base presence"),
        ({"PRESENCE_POLLING": "sometimes"}, "PRESENCE_POLLING must be auto, on or off"),
        ({"PRESENCE_RECONCILE_SCHEDULE": "5 minutes"}, "PRESENCE_RECONCILE_SCHEDULE must have six NCRONTAB"),
        ({"BRIDGE_JOBS": "routing,faxes"}, "BRIDGE_JOBS names no such job: faxes"),
        ({"PRESENCE_POLL_SCHEDULE": "*/5"}, "PRESENCE_POLL_SCHEDULE must have six NCRONTAB fields"),
    ],
)
def test_malformed_settings_are_named(change, named):
    with pytest.raises(SettingsError) as caught:
        load_settings({**GOOD, **change})
    assert named in str(caught.value)


def test_no_secret_and_no_certificate_means_managed_identity():
    settings = load_settings({k: v for k, v in GOOD.items() if k != "AZURE_CLIENT_SECRET"})
    assert settings.dataverse.credential_kind == "managed_identity"


def test_basic_auth_alone_is_enough_for_routing():
    settings = load_settings({**GOOD, "ROUTING_API_KEY": "", "ROUTING_BASIC_USER": "u", "ROUTING_BASIC_PASSWORD": "p"})
    assert settings.routing.api_key is None and settings.routing.basic_user == "u"


def test_call_sync_section_defaults_and_values():
    from call_sync.config import CallSyncConfig

    assert load_settings(GOOD).call_sync == CallSyncConfig(
        park_days=7, start_margin_seconds=120, initial_lookback_hours=24, private_calls="delete", recording_link=None
    )
    chosen = load_settings(
        {
            **GOOD,
            "CALL_SYNC_PARK_DAYS": "14",
            "CALL_START_MARGIN_SECONDS": "0",
            "CALL_SYNC_INITIAL_LOOKBACK_HOURS": "72",
            "CALL_SYNC_PRIVATE_CALLS": "Anonymize",
            "CALL_SYNC_RECORDING_LINK": "https://rec.example.com/{recording_id}",
        }
    ).call_sync
    assert chosen == CallSyncConfig(
        park_days=14,
        start_margin_seconds=0,
        initial_lookback_hours=72,
        private_calls="anonymise",
        recording_link="https://rec.example.com/{recording_id}",
    )
    assert load_settings({**GOOD, "CALL_SYNC_RECORDING_LINK": "id"}).call_sync.recording_link == "id"
    assert load_settings({**GOOD, "CALL_SYNC_RECORDING_LINK": "off"}).call_sync.recording_link is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CALL_SYNC_PARK_DAYS", "0"),
        ("CALL_SYNC_PARK_DAYS", "a week"),
        ("CALL_START_MARGIN_SECONDS", "-5"),
        ("CALL_SYNC_INITIAL_LOOKBACK_HOURS", "1000"),
        ("CALL_SYNC_PRIVATE_CALLS", "keep"),
        ("CALL_SYNC_RECORDING_LINK", "http://rec.example.com/{recording_id}"),
        ("CALL_SYNC_RECORDING_LINK", "https://rec.example.com/latest"),
        ("CALL_SYNC_FOLLOW_UPS", "sometimes"),
        ("CALL_SYNC_FOLLOW_UP_DUE_HOURS", "0"),
        ("CALL_SYNC_QUEUE_MAP", "[1, 2]"),
        ("CALL_SYNC_QUEUE_MAP", '{"queue-1": "not a guid"}'),
        ("CALL_SYNC_UNKNOWN_CALLER_LEADS", "maybe"),
        ("CALL_SYNC_REGARDING_CASE", "2"),
        ("CALL_SYNC_TRANSCRIPTS", "yes please"),
        ("CALL_SYNC_TRANSCRIPT_WAIT_HOURS", "1000"),
    ],
)
def test_bad_call_sync_settings_are_named(name, value):
    with pytest.raises(SettingsError) as caught:
        load_settings({**GOOD, name: value})
    assert name in str(caught.value) and len(caught.value.problems) == 1


def test_follow_up_unknown_caller_regarding_and_transcript_options():
    defaults = load_settings(GOOD).call_sync
    assert (defaults.follow_ups, defaults.follow_up_due_hours, defaults.queue_calls, defaults.queue_map) == (
        True,
        24,
        True,
        (),
    )
    assert (defaults.unknown_caller_leads, defaults.blocked_numbers) == (False, ())
    assert (defaults.regarding_case, defaults.regarding_opportunity) == (True, False)
    assert (defaults.transcripts, defaults.transcript_wait_hours) == (False, 24)
    chosen = load_settings(
        {
            **GOOD,
            "CALL_SYNC_FOLLOW_UPS": "off",
            "CALL_SYNC_QUEUE_MAP": '{"Q-1": "0B5E0000-0000-4000-8000-0000000000D1"}',
            "CALL_SYNC_UNKNOWN_CALLER_LEADS": "on",
            "CALL_SYNC_BLOCKED_NUMBERS": "+358 9 4242 0000, 09 4242 0001;",
            "CALL_SYNC_REGARDING_OPPORTUNITY": "true",
            "CALL_SYNC_TRANSCRIPTS": "on",
        }
    ).call_sync
    assert chosen.follow_ups is False and chosen.queue_map == (("q-1", "0b5e0000-0000-4000-8000-0000000000d1"),)
    assert chosen.unknown_caller_leads and chosen.blocked_numbers == ("+358 9 4242 0000", "09 4242 0001")
    assert chosen.regarding_opportunity and chosen.transcripts


def test_schedules_have_documented_defaults():
    bare = {k: v for k, v in GOOD.items() if not k.endswith("_SCHEDULE")}
    settings = load_settings(bare)
    assert settings.routing.index_schedule == settings.call_sync.schedule == "0 */5 * * * *"
    assert settings.user_ids.schedule == "0 0 * * * *"
    assert (settings.presence.reconcile_schedule, settings.presence.poll_schedule) == ("0 */5 * * * *", "0 */2 * * * *")


ROUTING_ONLY = {
    "BRIDGE_JOBS": "routing",
    "DATAVERSE_URL": GOOD["DATAVERSE_URL"],
    "ROUTING_API_KEY": GOOD["ROUTING_API_KEY"],
    "PHONE_DEFAULT_REGION": "FI",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def test_routing_only_needs_dataverse_routing_key_region_and_storage():
    """Issue 19: a SmartRouting-only tenant sets nothing about Enreach or presence."""
    from bridge.settings import JobDisabled

    settings = load_settings(ROUTING_ONLY)
    assert settings.jobs == {"routing"}
    assert settings.routing.api_key == GOOD["ROUTING_API_KEY"] and settings.matching.region == "FI"
    assert not settings.has("enreach") and not settings.has("presence")
    with pytest.raises(JobDisabled, match="BRIDGE_JOBS=routing"):
        _ = settings.enreach


def test_a_disabled_jobs_malformed_settings_are_not_read():
    settings = load_settings({**ROUTING_ONLY, "PRESENCE_POLLING": "sometimes", "ENREACH_USER": "apiuser"})
    assert settings.jobs == {"routing"}


def test_only_the_enabled_jobs_settings_are_required():
    with pytest.raises(SettingsError) as caught:
        load_settings({"BRIDGE_JOBS": "user_ids"})
    text = str(caught.value)
    assert "ENREACH_USER" in text and "DATAVERSE_URL" in text
    assert "ROUTING_API_KEY" not in text and "PRESENCE_WEBHOOK_KEY" not in text and "PHONE_DEFAULT_REGION" not in text
