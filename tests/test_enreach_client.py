"""The Enreach client against the Enreach emulator over loopback HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emulators._server import FaultRule
from enreach import Availability, EnreachAuthError, EnreachClient, EnreachError, EnreachUnavailable
from tests.helpers import FAST_RETRY

UTC = UTC


def _load(world):
    world.enreach.load(
        {
            "users": [
                {
                    "Id": "e1",
                    "Email": "Aino.Virtanen@example.fi",
                    "FirstName": "Aino",
                    "LastName": "Virtanen",
                    "MobileNumber": "+358401110001",
                    "Availability": 0,
                }
            ],
            "calls": [
                {
                    "CallId": "c1",
                    "UserId": "e1",
                    "StartTime": "2026-11-24 08:00:00",
                    "EndTime": "2026-11-24 08:05:00",
                    "Direction": "out",
                    "OtherNumber": "+358501234567",
                    "DurationInSeconds": 300,
                    "Classification": "Work",
                    "Modified": "2026-11-24 08:05:01",
                },
                {
                    "CallId": "c2",
                    "UserId": "e1",
                    "StartTime": "2026-10-01 08:00:00",
                    "EndTime": "2026-10-01 08:01:00",
                    "Direction": "in",
                    "OtherNumber": "+358501234567",
                    "DurationInSeconds": 60,
                    "Classification": "Private",
                    "Modified": "2026-10-01 08:01:01",
                },
            ],
        }
    )


def test_discovery_then_basic_auth(enreach_client, world):
    _load(world)
    me = enreach_client.me()
    assert me.email == world.app_settings()["ENREACH_USER"]
    paths = [r["path"] for r in world.enreach.requests]
    assert paths == ["/discovery/api/user", "/users/me"]
    enreach_client.users()
    assert world.enreach.request_count("/discovery") == 1  # discovered once, then cached


def test_wrong_secret_key_is_refused_with_a_clear_error(settings, world):
    client = EnreachClient(settings.enreach_user, "wrong-key", api_url=world.enreach.url, retry=FAST_RETRY)
    with pytest.raises(EnreachAuthError, match="ENREACH_SECRET_KEY"):
        client.me()


def test_discovery_of_an_unknown_user_names_the_setting(world):
    client = EnreachClient("nobody@example.fi", "x", discovery_url=world.enreach.url + "/discovery", retry=FAST_RETRY)
    with pytest.raises(EnreachError, match="ENREACH_USER"):
        client.me()


def test_calls_by_modified_time_parse_into_records(enreach_client, world):
    _load(world)
    calls = enreach_client.calls(datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))
    assert [(c.call_id, c.direction, c.classification, c.duration_seconds) for c in calls] == [
        ("c1", "out", "Work", 300)
    ]
    assert calls[0].start == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_long_ranges_are_split_into_31_day_requests(enreach_client, world):
    _load(world)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    calls = enreach_client.calls(start, start + timedelta(days=90), by="start")
    assert sorted(c.call_id for c in calls) == ["c1", "c2"]
    assert world.enreach.request_count("/calls") == 3


def test_availability_round_trip(enreach_client, world):
    _load(world)
    enreach_client.set_availability("e1", Availability.DND)
    assert enreach_client.get_availability("e1") == Availability.DND
    with pytest.raises(ValueError):
        enreach_client.set_availability("e1", 4)


def test_429_then_success(enreach_client, world):
    _load(world)
    enreach_client.me()
    world.enreach.inject(FaultRule(status=429, retry_after=0, path="/users", count=2))
    assert enreach_client.users()[0].id == "e1"
    assert world.enreach.request_count("/users", method="GET") == 4  # me, 429, 429, ok


def test_persistent_5xx_raises_unavailable(enreach_client, world):
    enreach_client.me()
    world.enreach.inject(FaultRule(status=500, path="/users", count=99))
    with pytest.raises(EnreachUnavailable):
        enreach_client.users()
