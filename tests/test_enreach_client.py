"""The Enreach client against the emulator, which speaks only the publicly evidenced API:
discovery, Basic auth, users by UserName (completed from the Default directory), calls per user
read through the mapping (each evidence field, its variants, operator overrides, the privacy
default) and the availability lifecycle (set, read, end)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from bridge.settings import SettingsError, load_settings
from emulators._server import FaultRule
from enreach import (
    EnreachAuthError,
    EnreachCall,
    EnreachClient,
    EnreachError,
    EnreachUnavailable,
    FieldMapError,
    UnmappedAvailability,
    parse_field_map,
    users_by_email,
)
from tests.helpers import FAST_RETRY, enreach_call, enreach_client_for, enreach_users

E1 = "e1a0c001-0000-4000-8000-000000000001"
E2 = "e1a0c001-0000-4000-8000-000000000002"
DAY = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def _load(world, calls=()):
    world.enreach.load(
        {
            **enreach_users((E1, "aino.virtanen@example.fi", "+358401110001"), (E2, "mikko@example.fi", None)),
            "calls": list(calls),
        }
    )


def _window(client, **kw):
    return client.calls(DAY - timedelta(hours=1), DAY + timedelta(hours=6), users=client.users(), **kw)


def test_discovery_then_basic_auth(enreach_client, world):
    _load(world)
    me = enreach_client.me()
    assert me.email == world.app_settings()["ENREACH_USER"]
    paths = [r["path"] for r in world.enreach.requests]
    assert paths == ["/discovery/api/user", "/users/me"]
    enreach_client.users()
    assert world.enreach.request_count("/discovery") == 1  # discovered once, then cached


def test_wrong_secret_key_is_refused_with_a_clear_error(settings, world):
    client = EnreachClient(settings.enreach.user, "wrong-key", api_url=world.enreach.url, retry=FAST_RETRY)
    with pytest.raises(EnreachAuthError, match="ENREACH_SECRET_KEY"):
        client.me()


def test_discovery_of_an_unknown_user_names_the_setting(world):
    client = EnreachClient("nobody@example.fi", "x", discovery_url=world.enreach.url + "/discovery", retry=FAST_RETRY)
    with pytest.raises(EnreachError, match="ENREACH_USER"):
        client.me()


# -- users ----------------------------------------------------------------------------------


def test_users_come_by_username_and_take_numbers_from_the_default_directory(enreach_client, world):
    _load(world)
    users = {u.id: u for u in enreach_client.users()}
    assert users[E1].email == "aino.virtanen@example.fi"  # UserName, the login e-mail
    assert users[E1].mobile_number == "+358401110001"  # only the directory entry has it
    assert world.enreach.request_count("/directory") == 2  # the list, then the Default directory


def test_user_matching_falls_back_to_the_directory_email(enreach_client, world):
    world.enreach.load(
        {
            "users": [{"Id": E1, "UserName": "aino.login@tenant.example"}, {"Id": E2}],
            "directory": [
                {"Id": E1, "Email": "aino.virtanen@example.fi"},
                {"Id": E2, "Email": "mikko@example.fi", "MobileNumber": "+358401110002"},
            ],
        }
    )
    index = users_by_email(enreach_client.users())
    assert index["aino.login@tenant.example"].id == E1  # the login first
    assert index["aino.virtanen@example.fi"].id == E1  # the directory's address too
    assert index["mikko@example.fi"].id == E2  # a user without UserName is found by the directory's Email


def test_no_directory_request_when_users_carry_everything(settings, world):
    api_user = {"Id": E2, "UserName": settings.enreach.user, "MobileNumber": "+358401110002"}  # listed like anyone
    world.enreach.load({"users": [{"Id": E1, "UserName": "a@example.fi", "MobileNumber": "+358401110001"}, api_user]})
    client = enreach_client_for(settings)
    assert client.users()[0].mobile_number == "+358401110001"
    assert world.enreach.request_count("/directory") == 0


# -- calls: each evidence field and its variants ------------------------------------------


def test_calls_are_asked_for_per_user_and_read_through_the_evidence_fields(enreach_client, world, settings):
    _load(
        world,
        [
            enreach_call("in-1", "aino.virtanen@example.fi", DAY, seconds=300, number="+358501234567"),
            enreach_call("out-1", "mikko@example.fi", DAY, seconds=45, outgoing=True, number="+358507654321"),
        ],
    )
    world.enreach.calls[0]["RecordingIds"] = ["rec-1", "rec-2"]
    world.enreach.calls[0]["AnswerQueueId"] = "q-1"
    world.enreach.calls[1]["EndResult"] = 3
    calls = {c.call_id: c for c in _window(enreach_client)}
    incoming, outgoing = calls["in-1"], calls["out-1"]
    assert (incoming.user_id, incoming.direction, incoming.other_number) == (E1, "in", "+358501234567")  # ANum
    assert (outgoing.user_id, outgoing.direction, outgoing.other_number) == (E2, "out", "+358507654321")  # BNum
    assert incoming.duration_seconds == 300 and incoming.end == DAY + timedelta(seconds=300)
    assert incoming.start == DAY and incoming.classification == "Work"
    assert incoming.recording_ids == ("rec-1", "rec-2") and incoming.answer_queue_id == "q-1"
    assert incoming.user_name == "aino.virtanen@example.fi"
    assert outgoing.end_result == 3 and incoming.end_result == 0
    user_ids = sorted(
        dict(parse_qsl(r["query"])).get("UserIDs") for r in world.enreach.requests if r["path"] == "/calls"
    )
    # one request per user, UserIDs=<id>: the two users and the API user (GET users lists it too)
    assert user_ids == sorted([E1, E2, world.enreach.api_user_id(settings.enreach.user)])


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"CallID": "variant-id", "CallId": None}, ("variant-id", DAY, "in")),
        ({"StartTime": None}, ("c", DAY, "in")),  # TimeStamp stands in
        ({"Direction": 1}, ("c", DAY, "out")),
        ({"Direction": "Out"}, ("c", DAY, "out")),
        ({"Direction": "true"}, ("c", DAY, "out")),
        ({"Direction": False}, ("c", DAY, "in")),
        ({"Direction": 0}, ("c", DAY, "in")),
    ],
)
def test_tolerated_variants(changes, expected):
    record = enreach_call("c", "a@example.fi", DAY)
    for name, value in changes.items():
        if value is None:
            record.pop(name)
        else:
            record[name] = value
    call = EnreachCall.from_api(record)
    assert (call.call_id, call.start, call.direction) == expected


def test_privacy_first_a_call_without_classification_is_unclassified(enreach_client, world):
    _load(
        world,
        [
            enreach_call("none", "aino.virtanen@example.fi", DAY, classification=None),
            enreach_call("odd", "aino.virtanen@example.fi", DAY, classification="Something"),
            enreach_call("private", "aino.virtanen@example.fi", DAY, classification="Private"),
        ],
    )
    assert {c.call_id: c.classification for c in _window(enreach_client)} == {
        "none": "Unclassified",
        "odd": "Unclassified",
        "private": "Private",
    }


def test_an_unreadable_record_is_counted_by_the_missing_field_not_fatal(enreach_client, world, caplog):
    broken = enreach_call("x", "aino.virtanen@example.fi", DAY)
    broken.pop("CallId")
    _load(world, [broken, enreach_call("ok", "aino.virtanen@example.fi", DAY)])
    assert [c.call_id for c in _window(enreach_client)] == ["ok"]
    assert enreach_client.skipped_records == {"calls.call_id": 1}
    assert "ENREACH_FIELD_MAP.calls.call_id" in caplog.text
    assert "+358" not in caplog.text  # field names, never values


def test_operator_overrides_each_field_and_value_meaning(settings, world):
    from dataclasses import replace

    record = {
        "Ident": "o-1",
        "UserName": "aino.virtanen@example.fi",
        "Began": "2026-11-24 08:00:00",
        "Dir": "O",
        "Other": "+358501234567",
        "Secs": 75,
        "Kind": "BIZ",
        "Terminal": "yes",
    }
    _load(world, [{**record, "StartTime": record["Began"]}])  # the emulator filters on StartTime
    field_map = {
        "calls": {
            "call_id": "Ident",
            "start": ["Began"],
            "direction": "Dir",
            "outgoing_values": ["o"],
            "other_number": "Other",
            "duration": "Secs",
            "classification": "Kind",
            "work_values": ["BIZ"],
            "is_mobile": "Terminal",
        }
    }
    configured = load_settings(
        {
            **world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"}),
            "ENREACH_FIELD_MAP": json.dumps(field_map),
        }
    )
    client = enreach_client_for(configured)
    [call] = _window(client)
    assert (call.call_id, call.direction, call.other_number, call.duration_seconds) == (
        "o-1",
        "out",
        "+358501234567",
        75,
    )
    assert (call.classification, call.is_mobile) == ("Work", True)
    default = EnreachCall.from_api({**record, "CallId": "d", "StartTime": record["Began"]})
    assert default.classification == "Unclassified" and default.other_number is None  # defaults see none of it
    assert replace(configured.enreach.mapping.calls).duration == ("Secs",)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"calls": {"durration": "X"}}', "calls.durration"),
        ('{"calls": {"call_id": []}}', "calls.call_id"),
        ('{"calls": {"duration": 5}}', "calls.duration"),
        ('{"callz": {}}', "callz"),
        ('{"availability": {"event_types": {"DND": 3, "Busy": 3}}}', "availability.event_types"),
        ('{"availability": {"event_types": {"Available": 0}}}', "availability.event_types.Available"),
        ('{"availability": {"event_types": {"Busy": "two"}}}', "availability.event_types.Busy"),
        ("[1]", "(whole setting)"),
        ("{not json", "(whole setting)"),
    ],
)
def test_field_map_is_validated_with_errors_naming_the_key(text, key):
    with pytest.raises(FieldMapError) as caught:
        parse_field_map(text)
    assert caught.value.key == key
    assert f"ENREACH_FIELD_MAP.{key}" in str(caught.value)


def test_a_bad_field_map_stops_the_settings_naming_it(world):
    with pytest.raises(SettingsError, match=r"ENREACH_FIELD_MAP\.calls\.nope"):
        load_settings(
            {
                **world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"}),
                "ENREACH_FIELD_MAP": '{"calls": {"nope": "x"}}',
            }
        )


def test_long_ranges_are_split_into_31_day_requests_per_user(enreach_client, world):
    _load(
        world,
        [
            enreach_call("c1", "aino.virtanen@example.fi", DAY),
            enreach_call("c2", "aino.virtanen@example.fi", datetime(2026, 10, 1, 8, tzinfo=UTC)),
        ],
    )
    users = [u for u in enreach_client.users() if u.id == E1]
    start = datetime(2026, 9, 1, tzinfo=UTC)
    calls = enreach_client.calls(start, start + timedelta(days=90), by="start", users=users)
    assert sorted(c.call_id for c in calls) == ["c1", "c2"]
    assert world.enreach.request_count("/calls") == 3


# -- availability lifecycle -------------------------------------------------------------------


def test_availability_lifecycle_set_read_end(enreach_client, world):
    _load(world)
    assert enreach_client.current_availability(E1).name == "Available"  # none active
    created = enreach_client.set_availability(E1, "DND")
    posted = [r for r in world.enreach.requests if r["method"] == "POST"]
    assert posted and posted[-1]["path"] == f"/users/{E1}/availability"
    [stored] = world.enreach.availabilities  # what the POST body said
    assert stored["EventTypeID"] == 3 and stored["UserID"] == E1 and stored["EventSource"] == "Dynamics 365 bridge"
    current = enreach_client.current_availability(E1)
    assert (current.id, current.type_id, current.name) == (created, 3, "DND")
    assert enreach_client.set_availability(E1, "DND") == created  # already so: no second availability
    assert len([r for r in world.enreach.requests if r["method"] == "POST"]) == 1
    enreach_client.set_availability(E1, "Available")
    assert world.enreach.request_count(f"/availability/{created}", method="DELETE") == 1
    assert enreach_client.current_availability(E1).name == "Available"


def test_an_availability_without_an_event_type_id_is_refused_not_guessed(enreach_client, world):
    _load(world)
    with pytest.raises(UnmappedAvailability, match=r"ENREACH_FIELD_MAP\.availability\.event_types\.Busy"):
        enreach_client.set_availability(E1, "Busy")
    assert world.enreach.request_count("/availability", method="POST") == 0


def test_event_type_ids_come_from_the_mapping(settings, world):
    _load(world)
    world.enreach.set_availability(E1, 7)  # the user's own, of a type the operator mapped
    configured = load_settings(
        {
            **world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"}),
            "ENREACH_FIELD_MAP": '{"availability": {"event_types": {"Away": 7}}}',
        }
    )
    client = enreach_client_for(configured)
    assert client.current_availability(E1).name == "Away"
    assert enreach_client_for(settings).current_availability(E1).name is None  # unmapped: not guessed


# -- reliability ------------------------------------------------------------------------------


def test_429_then_success(enreach_client, world):
    _load(world)
    enreach_client.me()
    world.enreach.inject(FaultRule(status=429, retry_after=0, path="/users", count=2))
    assert enreach_client.users()[0].id == E1
    assert world.enreach.request_count("/users", method="GET") == 4  # me, 429, 429, ok


def test_persistent_5xx_raises_unavailable(enreach_client, world):
    enreach_client.me()
    world.enreach.inject(FaultRule(status=500, path="/users", count=99))
    with pytest.raises(EnreachUnavailable):
        enreach_client.users()
