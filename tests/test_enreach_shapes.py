"""What the Enreach API may answer where public evidence is silent or says it differently, over
HTTP against the emulator in each of its modes: every plausible "none active" availability shape,
open-ended and ended availabilities, JSON dates (``/Date(ms)/``) for a client without
``X-Json-Serializer: 2``, the API user as a user, and the filters the public clients use
(mokso/enreachvoice, mokso/enreachvoice_mcp main.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from enreach import EnreachCall, parse_time
from ops.probe import probe_enreach
from tests.helpers import enreach_call, enreach_client_for, enreach_users

E1 = "e1a0c001-0000-4000-8000-000000000001"
E2 = "e1a0c001-0000-4000-8000-000000000002"
DAY = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _users(world, **extra):
    world.enreach.load(
        {**enreach_users((E1, "aino@example.fi", "+358401110001"), (E2, "mikko@example.fi", None)), **extra}
    )


# -- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1712518735000)/", datetime(2024, 4, 7, 19, 38, 55, tzinfo=UTC)),
        ("/Date(1712518735000+0300)/", datetime(2024, 4, 7, 19, 38, 55, tzinfo=UTC)),  # the offset names a zone
        ("/Date(1712518735000-0500)/", datetime(2024, 4, 7, 19, 38, 55, tzinfo=UTC)),
        ("\\/Date(1712518735123)\\/", datetime(2024, 4, 7, 19, 38, 55, 123000, tzinfo=UTC)),
        ("2024-04-07 19:38:55", datetime(2024, 4, 7, 19, 38, 55, tzinfo=UTC)),  # UTC without Z
        ("2024-04-07T19:38:55", datetime(2024, 4, 7, 19, 38, 55, tzinfo=UTC)),
        ("2024-04-07T22:38:55+03:00", datetime(2024, 4, 7, 19, 38, 55, tzinfo=UTC)),
        ("9999-12-31T23:59:59.9999999", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_times_in_every_form_enreach_may_send(text, expected):
    assert parse_time(text) == expected


def test_the_app_reads_calls_in_both_date_formats(enreach_client, world, settings):
    _users(world, calls=[enreach_call("c1", "aino@example.fi", DAY, seconds=90)])
    # the app sends X-Json-Serializer: 2 and gets the dates as text
    window = (DAY - timedelta(hours=1), DAY + timedelta(hours=1))
    calls = enreach_client.calls(*window, by="start", users=enreach_client.users())
    text_start = next(c.start for c in calls if c.call_id == "c1")
    # the same record as a client without the header gets it: JSON dates
    api = enreach_client.api_url
    auth = (settings.enreach.user, settings.enreach.secret_key)
    params = {"StartTime": "2026-11-24 07:00:00", "EndTime": "2026-11-24 09:00:00", "UserIDs": E1}
    bare = requests.get(f"{api}/calls", params=params, auth=auth, headers={"Accept": "application/json"}, timeout=10)
    record = bare.json()[0]
    assert record["StartTime"] == "/Date(1795507200000)/" and record["TimeStamp"].startswith("/Date(")
    json_start = EnreachCall.from_api(record, enreach_client.mapping.calls).start
    assert text_start == json_start == DAY


def test_a_client_that_forgets_the_header_fails_as_in_life(world, settings):
    """A parser that expects text dates (as the app's did) gets /Date(...)/ without the header."""
    _users(world, calls=[enreach_call("c1", "aino@example.fi", DAY)])
    api = enreach_client_for(settings).api_url
    body = requests.get(
        f"{api}/calls",
        params={"CallId": "c1"},
        auth=(settings.enreach.user, settings.enreach.secret_key),
        timeout=10,
    ).json()
    with pytest.raises(ValueError):
        datetime.fromisoformat(body[0]["StartTime"])


# -- availability: every "none active" shape, open-ended and ended ones ---------------------


@pytest.mark.parametrize("shape", ["204", "404", "null", "{}", "available_record"])
def test_none_active_in_every_shape_is_available_and_available_ends_nothing(enreach_client, world, shape):
    _users(world)
    world.enreach.configure(empty_current=shape)
    current = enreach_client.current_availability(E1)
    assert current.name == "Available" and current.id is None
    assert current.shape == {"available_record": "record"}.get(shape, shape)
    assert enreach_client.set_availability(E1, "Available") is None
    assert world.enreach.request_count("/availability/", method="DELETE") == 0
    # DND on, then off again; the DELETE's answer in each shape is fine too
    for answer in ("204", "200_null", "200_record"):
        world.enreach.configure(delete_answer=answer)
        assert enreach_client.set_availability(E1, "DND") is not None
        assert enreach_client.current_availability(E1).name == "DND"
        enreach_client.set_availability(E1, "Available")
        assert world.enreach.current_type(E1) is None


def test_an_available_record_with_the_tenants_own_number(world, settings):
    from bridge.settings import load_settings

    _users(world, availabilities=[{"UserID": E1, "EventTypeID": 17}])
    assert enreach_client_for(settings).current_availability(E1).name is None  # unmapped: unknown
    mapped = load_settings(
        {
            **world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"}),
            "ENREACH_FIELD_MAP": json.dumps({"availability": {"available_values": ["Available", "17"]}}),
        }
    )
    assert enreach_client_for(mapped).current_availability(E1).name == "Available"


def test_open_ended_and_ended_availabilities(enreach_client, world):
    _users(
        world,
        availabilities=[
            {"UserID": E1, "EventTypeID": 3, "EndTime": "9999-12-31T23:59:59.9999999"},  # open-ended, no Z
            {"UserID": E2, "EventTypeID": 3, "EndTime": "2026-11-25 11:00:00"},  # ended an hour ago (UTC, no Z)
        ],
    )
    open_ended = enreach_client.current_availability(E1, now=NOW)
    assert (open_ended.name, open_ended.end) == ("DND", None)
    assert enreach_client.current_availability(E2, now=NOW).name == "Available"
    # an hour earlier (10:30 UTC; were the text read as local time +02:00 it would have ended at 09:00)
    still = enreach_client.current_availability(E2, now=NOW - timedelta(minutes=90))
    assert (still.name, still.end) == ("DND", datetime(2026, 11, 25, 11, 0, tzinfo=UTC))


def test_open_ended_availability_in_json_dates(world, settings):
    """A client without the header reads the same end as a JSON date."""
    _users(world, availabilities=[{"UserID": E1, "EventTypeID": 3, "EndTime": "9999-12-31 23:59:59"}])
    api = enreach_client_for(settings).api_url
    body = requests.get(
        f"{api}/users/{E1}/availability/current", auth=(settings.enreach.user, settings.enreach.secret_key), timeout=10
    ).json()
    assert body["EndTime"] == "/Date(253402300799000)/"
    assert parse_time(body["EndTime"]) >= datetime(9000, 1, 1, tzinfo=UTC)


# -- the API user, filters, directory and queues --------------------------------------------


def test_the_api_user_is_a_user(enreach_client, world):
    _users(world)
    me = enreach_client.me()
    assert me.id in {u.id for u in enreach_client.users()}
    assert enreach_client.current_availability(me.id).name == "Available"
    assert enreach_client.set_availability(me.id, "DND") is not None
    assert enreach_client._call("GET", f"users/{me.id}")["Id"] == me.id  # users/<me> is served
    assert enreach_client._call("GET", "users/me/availability/current")["EventTypeID"] == 3


def test_call_lookup_by_call_id_and_user_id_lists(enreach_client, world):
    _users(
        world,
        calls=[
            enreach_call("c1", "aino@example.fi", DAY),
            enreach_call("c2", "mikko@example.fi", DAY + timedelta(minutes=5)),
        ],
    )
    assert [c["CallId"] for c in enreach_client._call("GET", "calls", params={"CallId": "c2"})] == ["c2"]
    window = {"StartTime": "2026-11-24 07:00:00", "EndTime": "2026-11-24 09:00:00", "UserIDs": f"{E1},{E2}"}
    assert enreach_client._call("GET", "calls", params=window) == []  # the default mode: a list matches nobody
    world.enreach.configure(user_ids_list="union")
    assert sorted(c["CallId"] for c in enreach_client._call("GET", "calls", params=window)) == ["c1", "c2"]
    world.enreach.configure(user_ids_list="400")
    with pytest.raises(Exception, match="400"):
        enreach_client._call("GET", "calls", params=window)


def test_directory_filters_and_the_fields_enreachvoice_mcp_reads(enreach_client, world):
    queue = "9a0e0001-0000-4000-8000-000000000001"
    _users(world, queues=[{"Id": queue, "Name": "Sales", "Numbers": ["+358942420000"], "TypeId": 4}])
    directory = enreach_client._call("GET", "directory")[0]["ID"]
    everyone = enreach_client._call("GET", f"directory/{directory}", params={"MaxCount": "1000"})["Entries"]
    for field in ("Id", "FirstName", "LastName", "Email", "WorkNumber", "MobileNumber", "OtherNumber"):
        assert all(field in e for e in everyone)
    for field in ("Description", "Company", "Subcompany", "Location", "Department", "QueueId", "Status"):
        assert all(field in e for e in everyone)
    queues = enreach_client._call("GET", f"directory/{directory}", params={"EntryTypes": "2", "MaxCount": "1000"})
    assert [e["QueueId"] for e in queues["Entries"]] == [queue]
    by_number = enreach_client._call("GET", f"directory/{directory}", params={"Number": "+358401110001"})
    assert [e["Id"] for e in by_number["Entries"]] == [E1]
    status = enreach_client.queues()[0]["Status"]
    assert set(status) == {
        "OpenStatus",
        "MaxWaitTime",
        "QueueLength",
        "OngoingCalls",
        "AgentsOnWrapUp",
        "FreeAgents",
        "ServingAgents",
    }


def test_a_rate_limit_answers_429_with_retry_after(world, settings):
    world.enreach.configure(rate_limit=2, rate_window=60, rate_retry_after=7)
    api = enreach_client_for(settings).api_url
    auth = (settings.enreach.user, settings.enreach.secret_key)
    answers = [requests.get(f"{api}/users/me", auth=auth, timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "7"


# -- the probe says what the tenant answers --------------------------------------------------


def _tenant_calls():
    return [
        enreach_call(f"a{i}", "aino@example.fi", NOW - timedelta(hours=i + 1), seconds=60, classification=None)
        for i in range(3)
    ] + [enreach_call("m1", "mikko@example.fi", NOW - timedelta(hours=2), seconds=60, classification=None)]


@pytest.mark.parametrize("shape", ["204", "null", "{}"])
def test_the_probe_reports_the_empty_shape_and_the_query_mode(enreach_client, world, shape):
    _users(world, calls=_tenant_calls())
    world.enreach.configure(empty_current=shape)
    lines: list[str] = []
    result = probe_enreach(enreach_client, days=3, now=NOW, out=lines.append)
    text = "\n".join(lines)
    assert f"availability/current with none active answers {shape}" in result.notes
    assert "the tenant answers per_user only" in text
    # no call carries the classification: the verdict says the default name is probably the tagging API's
    assert any("tagging API" in p and "calls.classification" in p for p in result.problems)


def test_the_probe_finds_a_tenant_that_answers_all(enreach_client, world):
    _users(world, calls=_tenant_calls())
    world.enreach.configure(calls_without_user="all")
    lines: list[str] = []
    result = probe_enreach(enreach_client, days=3, now=NOW, out=lines.append)
    assert "query mode: all" in result.notes, "\n".join(lines)


@pytest.mark.parametrize(
    ("label", "expected"), [("Undefined", "Unclassified"), ("Work", "Work"), ("Private", "Private")]
)
def test_undefined_is_unclassified(enreach_client, world, label, expected):
    """The Voice Center's name for a call not classified yet is "Undefined" (Enreach wiki "History")."""
    _users(world, calls=[enreach_call("c1", "aino@example.fi", DAY, classification=label)])
    window = (DAY - timedelta(hours=1), DAY + timedelta(hours=1))
    [call] = enreach_client.calls(*window, by="start", users=enreach_client.users())
    assert call.classification == expected
