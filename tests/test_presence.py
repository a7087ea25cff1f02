"""Presence sync end to end: both emulators post their webhooks to the app's real HTTP functions
(served by the local Functions host), state lives in Azurite, and request counters prove there
is no ping-pong."""

from __future__ import annotations

import json
import random
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
import requests

from core.schema import CALL_SYNC
from emulators.dataverse import OMNICHANNEL_PRESENCES
from sandbox.services import provision_app_schema
from tests.helpers import clear_app_caches, serving_app
from tests.test_fuzz import HOSTILE

AGENT = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01"
ENREACH_ID = "e1a0c001-0000-4000-8000-000000000001"
IDS = {name: pid for name, (pid, _) in OMNICHANNEL_PRESENCES.items()}
AVAILABLE, BUSY, DND, AWAY, OFFLINE = (IDS[n] for n in ("Available", "Busy", "Busy - DND", "Away", "Offline"))
CUSTOM_BUSY = "c0570000-0000-4000-8000-00000000b051"
KEY = "test-routing-key-0123456789"
PRESENCE_KEY = "test-presence-key-0123456789"
SECRET = "test-enreach-webhook-secret-0123"
# This test tenant's Enreach vocabulary. No public source names the call-end or availability
# notification types, nor EventTypeIDs other than DND = 3: a tenant maps them in ENREACH_FIELD_MAP.
CALL_START, CALL_END, CHANGED = "QueueCallInAllocated", "TestCallEnded", "EmulatorAvailabilityChanged"
TYPE_IDS = {"Busy": 2, "DND": 3, "OffWork": 4, "Away": 6}
FIELD_MAP = {
    "events": {"call_end": [CALL_END], "availability_changed": [CHANGED]},
    "availability": {"event_types": TYPE_IDS},
}


@contextmanager
def serving_presence(world, monkeypatch, storage, **extra):
    """The app with this test tenant's mapping, both webhooks pointed at it, state in ``storage``."""
    world.dataverse.load(
        {
            "systemusers": [{"systemuserid": AGENT, "fullname": "Aino", "internalemailaddress": "aino@example.fi"}],
            "msdyn_presences": [
                {"msdyn_presenceid": CUSTOM_BUSY, "msdyn_name": "In a meeting", "msdyn_basepresencestatus": 192360001}
            ],
        }
    )
    provision_app_schema(world.dataverse)
    world.dataverse.touch("systemusers", AGENT, **{CALL_SYNC.user_id_column: ENREACH_ID})
    world.dataverse.set_presence(AGENT, AVAILABLE)
    world.enreach.load({"users": [{"Id": ENREACH_ID, "UserName": "aino@example.fi"}]})
    settings = world.app_settings(
        {
            "ROUTING_API_KEY": KEY,
            "PRESENCE_WEBHOOK_KEY": PRESENCE_KEY,
            "AzureWebJobsStorage": storage,
            "PRESENCE_ECHO_TTL_SECONDS": "60",
            "ENREACH_FIELD_MAP": json.dumps(FIELD_MAP),
            "ENREACH_WEBHOOK_SECRET": SECRET,
            "PRESENCE_TIME_BUDGET_SECONDS": "4.5",  # the most Enreach allows: a loaded test machine is slow
            **extra,
        }
    )
    with serving_app(monkeypatch, settings) as host:
        from presence_sync import runtime

        runtime.presence_sync()._store._table_name = f"p{uuid.uuid4().hex[:12]}"  # a fresh state table per test
        world.dataverse.presence_webhook.configure(
            f"{host.url}/api/presence/dataverse", {"X-Presence-Key": PRESENCE_KEY}
        )
        world.enreach.configure_webhook(f"{host.url}/api/presence/enreach", secret=SECRET)
        settle(world)
        world.dataverse.reset_requests()
        world.enreach.reset_requests()
        world.dataverse.presence_webhook.delivered.clear()
        world.enreach.webhook.delivered.clear()
        try:
            yield host
        finally:
            world.dataverse.presence_webhook.configure(None)
            world.enreach.configure_webhook(None)


@pytest.fixture()
def app(world, azurite, monkeypatch):
    with serving_presence(world, monkeypatch, azurite.connection_string) as host:
        yield host


def settle(world, rounds=6):
    """Deliver webhooks until both sides are quiet (a ping-pong would keep them busy)."""
    for _ in range(rounds):
        world.dataverse.presence_webhook.drain()
        world.enreach.webhook.drain()


def oc_presence(world):
    rows = [r for r in world.dataverse.rows("msdyn_agentstatuses") if r["_msdyn_agentid_value"] == AGENT]
    return rows[0]["_msdyn_currentpresenceid_value"]


def enreach_status(world):
    """The user's Enreach availability by name (none active: Available)."""
    type_id = world.enreach.current_type(ENREACH_ID)
    return "Available" if type_id is None else next(n for n, v in TYPE_IDS.items() if v == type_id)


def set_enreach(world, name):
    """The agent changes their availability in Enreach (a notification follows)."""
    world.enreach.set_availability(ENREACH_ID, None if name == "Available" else TYPE_IDS[name])


def call(world, event_type, call_id):
    world.enreach.notify(event_type, user_id=ENREACH_ID, call_id=call_id)


def modify_calls(world):
    return world.dataverse.request_count("CCaaS_ModifyAgentPresence")


def enreach_puts(world):
    """Availability writes: starting one (POST) or ending one (DELETE)."""
    return world.enreach.request_count("/availability", method="POST") + world.enreach.request_count(
        "/availability", method="DELETE"
    )


@pytest.mark.parametrize(
    ("presence", "status"),
    [
        (AVAILABLE, "Available"),
        (BUSY, "Busy"),
        (DND, "DND"),
        (OFFLINE, "OffWork"),
        (AWAY, "Away"),
        (CUSTOM_BUSY, "Busy"),
    ],
)
def test_omnichannel_presence_reaches_enreach_once(app, world, presence, status):
    if presence == AVAILABLE:
        world.dataverse.set_presence(AGENT, AWAY)
        settle(world)
        world.dataverse.reset_requests()
        world.enreach.reset_requests()
    world.dataverse.set_presence(AGENT, presence)
    settle(world)
    assert enreach_status(world) == status
    assert enreach_puts(world) == 1  # mirrored once
    assert modify_calls(world) == 0  # Enreach's notification of it came back as an echo and was dropped
    assert [s for s, _ in world.dataverse.presence_webhook.delivered][-1] == 200


@pytest.mark.parametrize(
    ("status", "presence"),
    [("Available", AVAILABLE), ("Busy", BUSY), ("DND", DND), ("OffWork", OFFLINE), ("Away", AWAY)],
)
def test_enreach_status_reaches_omnichannel_once(app, world, status, presence):
    if status == "Available":
        set_enreach(world, "Away")
        settle(world)
        world.dataverse.reset_requests()
        world.enreach.reset_requests()
    set_enreach(world, status)
    settle(world)
    assert oc_presence(world) == presence
    assert modify_calls(world) == 1
    assert enreach_puts(world) == 0  # Dataverse's webhook of our own change was recognised as an echo


def test_dnd_during_a_call_then_back_to_the_saved_presence(app, world):
    call(world, CALL_START, "call-1")
    settle(world)
    assert oc_presence(world) == DND
    call(world, "QueueCallInConnected", "call-1")  # same call: nothing more happens
    settle(world)
    assert modify_calls(world) == 1
    call(world, CALL_END, "call-1")
    settle(world)
    assert oc_presence(world) == AVAILABLE
    assert modify_calls(world) == 2 and enreach_puts(world) == 0  # neither change was mirrored to Enreach


def test_a_manual_change_during_a_call_wins(app, world):
    call(world, CALL_START, "call-1")
    settle(world)
    world.dataverse.set_presence(AGENT, AWAY)  # the agent picks Away by hand mid-call
    settle(world)
    assert enreach_status(world) == "Away"
    call(world, CALL_END, "call-1")
    settle(world)
    assert oc_presence(world) == AWAY and modify_calls(world) == 1  # only the DND at the start


def test_overlapping_calls_restore_after_the_last_one(app, world):
    world.dataverse.set_presence(AGENT, BUSY)
    settle(world)
    call(world, CALL_START, "a")
    call(world, CALL_START, "b")
    call(world, CALL_END, "a")
    settle(world)
    assert oc_presence(world) == DND
    call(world, CALL_END, "b")
    settle(world)
    assert oc_presence(world) == BUSY


def test_duplicate_and_late_events_do_not_leave_the_agent_in_dnd(app, world):
    call(world, CALL_START, "x")
    call(world, CALL_END, "x")
    call(world, CALL_END, "x")  # delivered twice
    call(world, CALL_START, "x")  # late, after the end
    settle(world)
    assert oc_presence(world) == AVAILABLE
    call(world, CALL_END, "never-started")  # end without start
    settle(world)
    assert oc_presence(world) == AVAILABLE and modify_calls(world) == 2


def test_an_enreach_status_change_during_a_call_applies_when_it_ends(app, world):
    call(world, CALL_START, "c")
    settle(world)
    set_enreach(world, "OffWork")  # the agent sets OffWork in Enreach mid-call
    settle(world)
    assert oc_presence(world) == DND
    call(world, CALL_END, "c")
    settle(world)
    assert oc_presence(world) == OFFLINE


def test_a_restart_between_call_start_and_end_still_restores(app, world):
    world.dataverse.set_presence(AGENT, AWAY)
    settle(world)
    call(world, CALL_START, "r")
    settle(world)
    from presence_sync import runtime

    table = runtime.presence_sync()._store._table_name
    clear_app_caches()  # a new instance: no memory of the call but what Table Storage holds
    runtime.presence_sync()._store._table_name = table
    call(world, CALL_END, "r")
    settle(world)
    assert oc_presence(world) == AWAY


def _post(url, body, headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = Request(url, data=data, method="POST", headers={"Content-Type": "application/json", **headers})
    try:
        with urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _envelope(event_type, **fields):
    return {
        "Id": str(uuid.uuid4()),
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "RootEntityType": "Call",
        "EntityType": "User",
        "EventType": event_type,
        **fields,
    }


def test_unknown_agents_get_a_clear_404(app, world):
    status, body = _post(
        f"{app.url}/api/presence/enreach",
        _envelope(CALL_START, EntityId="nobody", RootEntityId="1"),
        {"Secret": SECRET},
    )
    assert status == 404 and body["field"] == "UserId" and "sync_enreach_user_ids" in body["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"EntityId": ENREACH_ID}, "EventType"),
        ({"EventType": 5, "EntityId": ENREACH_ID}, "EventType"),
        ({"EventType": CALL_START, "EntityId": ENREACH_ID}, "CallId"),  # a call event without a call
        ({"EventType": CALL_END, "RootEntityId": "x"}, "UserId"),  # no user
        ({"EventType": CHANGED, "EntityId": ["x"]}, "EntityId"),
        ({"EventType": CHANGED, "EntityId": "x" * 129}, "EntityId"),
        ({"EventType": CHANGED, "EntityId": ".."}, "EntityId"),  # would make users/../availability
        ({"EventType": CHANGED, "UserId": "a/b", "EntityId": ENREACH_ID}, "UserId"),
        ({"EventType": CALL_END, "EntityId": ENREACH_ID, "RootEntityId": "../x"}, "RootEntityId"),
        ({"EventType": CHANGED, "EntityId": ENREACH_ID, "Id": "a\nb"}, "Id"),
        ([1], "body"),
        (b"{", "body"),
    ],
)
def test_malformed_enreach_events_are_400_naming_the_field(app, world, body, field):
    status, answer = _post(f"{app.url}/api/presence/enreach", body, {"Secret": SECRET})
    assert (status, answer["field"]) == (400, field)
    assert world.dataverse.request_count() == 0


def test_the_webhook_secret_authenticates_enreach(app, world, caplog):
    body = _envelope(CHANGED, EntityId=ENREACH_ID)
    assert _post(f"{app.url}/api/presence/enreach", body, {"Secret": "wrong-secret-0123456789"})[0] == 401
    assert _post(f"{app.url}/api/presence/enreach", body, {})[0] == 401
    assert "headers present" in caplog.text and "wrong-secret" not in caplog.text  # names, never values
    assert _post(f"{app.url}/api/presence/enreach", body, {"Secret": SECRET})[0] == 200
    # Each endpoint its own credential: the routing key Enreach holds for SmartRouting is refused here.
    status, answer = _post(f"{app.url}/api/presence/enreach", body, {"X-Benemen-APIKey": KEY})
    assert status == 401 and "routing API key is not accepted" in answer["error"]


def test_an_unmapped_event_type_is_accepted_and_reported_once_by_field_names(app, world, caplog):
    body = _envelope("QueueCallInQueued", EntityId=ENREACH_ID, RootEntityId="c-9", Extra="+358501234567")
    for _ in range(3):
        status, answer = _post(f"{app.url}/api/presence/enreach", body, {"Secret": SECRET})
        assert status == 202 and answer["event_type"] == "QueueCallInQueued"
    lines = [r.getMessage() for r in caplog.records if "QueueCallInQueued" in r.getMessage()]
    assert len(lines) == 1 and "Extra" in lines[0] and "+358501234567" not in caplog.text
    assert world.dataverse.request_count() == 0 and world.enreach.request_count("/availability") == 0


def test_call_starts_are_not_acted_on_while_no_call_end_is_mapped(world, azurite, monkeypatch):
    """Default mapping: QueueCallInAllocated is known, but no public source names a call-end type.
    Putting the agent in DND with no way to hear the call end would leave them stuck: refused."""
    world.dataverse.load({"systemusers": [{"systemuserid": AGENT, "fullname": "Aino"}]})
    provision_app_schema(world.dataverse)
    world.dataverse.touch("systemusers", AGENT, **{CALL_SYNC.user_id_column: ENREACH_ID})
    world.dataverse.set_presence(AGENT, AVAILABLE)
    settings = world.app_settings(
        {
            "ROUTING_API_KEY": KEY,
            "PRESENCE_WEBHOOK_KEY": PRESENCE_KEY,
            "AzureWebJobsStorage": azurite.connection_string,
            "ENREACH_WEBHOOK_SECRET": SECRET,
        }
    )
    with serving_app(monkeypatch, settings) as host:
        status, answer = _post(
            f"{host.url}/api/presence/enreach",
            _envelope(CALL_START, EntityId=ENREACH_ID, RootEntityId="c1"),
            {"Secret": SECRET},
        )
    assert status == 202 and "call_end" in answer["reason"]
    assert oc_presence(world) == AVAILABLE


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"PrimaryEntityName": "contact", "MessageName": "Update"}, "PrimaryEntityName"),
        ({"PrimaryEntityName": "msdyn_agentstatus", "MessageName": "Delete"}, "MessageName"),
        (
            {"PrimaryEntityName": "msdyn_agentstatus", "MessageName": "Update", "PrimaryEntityId": "x"},
            "PrimaryEntityId",
        ),
        (
            {
                "PrimaryEntityName": "msdyn_agentstatus",
                "MessageName": "Update",
                "PrimaryEntityId": str(uuid.uuid4()),
                "InputParameters": [],
            },
            "msdyn_currentpresenceid",
        ),
        ("not an object", "body"),
    ],
)
def test_malformed_dataverse_webhooks_are_400_naming_the_field(app, world, body, field):
    status, answer = _post(f"{app.url}/api/presence/dataverse", body, {"X-Presence-Key": PRESENCE_KEY})
    assert (status, answer["field"]) == (400, field)


def test_webhooks_refuse_wrong_keys(app):
    status, _ = _post(f"{app.url}/api/presence/dataverse", {}, {"X-Presence-Key": "wrong"})
    assert status == 401
    status, answer = _post(f"{app.url}/api/presence/dataverse?key={PRESENCE_KEY}", {"PrimaryEntityName": "x"}, {})
    assert status == 401 and "query string" in answer["error"]  # header only: a query lands in access logs
    status, _ = _post(f"{app.url}/api/presence/dataverse", {"PrimaryEntityName": "x"}, {"X-Presence-Key": PRESENCE_KEY})
    assert status == 400
    status, _ = _post(f"{app.url}/api/presence/enreach", {}, {"X-Benemen-APIKey": "wrong", "Secret": "wrong"})
    assert status == 401


def test_a_failing_downstream_answers_503_so_the_sender_retries(app, world):
    from emulators._server import FaultRule

    world.enreach.inject(FaultRule(status=503, path="/availability", count=99))
    world.dataverse.set_presence(AGENT, BUSY)
    settle(world)
    assert world.dataverse.presence_webhook.delivered[-1][0] == 503
    for _ in range(100):  # the retries may go on past the webhook's time budget, in the background
        if world.enreach.request_count("/availability") >= 5:
            break
        time.sleep(0.1)
    assert world.enreach.request_count("/availability") == 5  # retried with back-off first


# -- presence webhooks: generated events through the real HTTP functions ---------------------

PATHISH = [  # invalid in Table Storage keys or URL paths, and lone surrogates (escaped in the JSON)
    "a/b",
    "../../users",
    "x\\y",
    "#frag",
    "q?x=1",
    "\ud800",
    "e1a0c001-0000-4000-8000-00000000000\udfff",
    "%2F",
    "\u007f",
    ENREACH_ID + "/availability",
]
GUIDISH = [
    "' or 1 eq 1 or '00000000000000000000",  # 36 characters, not a GUID
    "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a0'",
    "4B7E2A10-1C3D-4E5F-8A9B-0C1D2E3F4A01",  # upper case: the same agent
    "{4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a}",  # 36 with the braces
    "00000000-0000-0000-0000-000000000000",
    "4b7e2a101c3d4e5f8a9b0c1d2e3f4a01xxxx",
]


_DELETE = object()  # a mutation that removes the key


def _paths(value, path=()):
    """Every place in a JSON value, as key/index paths."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _replaced(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        if new is _DELETE and not rest:
            return {k: v for k, v in value.items() if k != head}
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(value[head], rest, None if new is _DELETE else new)
    return copy


def _mutate(rng: random.Random, value):
    """One to three places, chosen uniformly, replaced by something hostile or wrong-typed, or removed."""
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(list(_paths(value))[1:])
        new = rng.choice(
            [
                *GUIDISH,
                *HOSTILE,
                *PATHISH,
                *PATHISH,
                None,
                0,
                -1,
                2**70,
                True,
                [],
                {},
                {"Id": rng.choice(GUIDISH)},
                "x" * 5000,
                _DELETE,
            ]
        )
        value = _replaced(value, path, new)
    return value


def test_generated_presence_events_never_fail_the_server(app, world):
    """2,000 events per webhook, each a valid one with parts replaced (path characters such as ``/``,
    ``#``, ``?`` and lone surrogates among them): never a 5xx (a 503 would mean a query Dataverse
    refused or a storage key Table Storage refused), and every answer names what is wrong or what
    was done."""
    from emulators.dataverse import _execution_context

    rng = random.Random(7)
    session = requests.Session()
    status_id = next(r["msdyn_agentstatusid"] for r in world.dataverse.rows("msdyn_agentstatuses"))
    valid_dataverse = _execution_context(status_id, AGENT, AVAILABLE)
    valid_enreach = [
        _envelope(CHANGED, EntityId=ENREACH_ID, RootEntityId=ENREACH_ID),
        _envelope(CALL_START, EntityId=ENREACH_ID, RootEntityId="c1"),
        _envelope(CALL_END, EntityId=ENREACH_ID, RootEntityId="c1"),
    ]
    seen: dict[tuple[str, int], int] = {}
    for _ in range(2000):
        for endpoint, valid, headers in (
            ("dataverse", valid_dataverse, {"X-Presence-Key": PRESENCE_KEY}),
            ("enreach", rng.choice(valid_enreach), {"Secret": SECRET}),
        ):
            body = valid if rng.random() < 0.1 else _mutate(rng, valid)
            response = session.post(
                f"{app.url}/api/presence/{endpoint}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", **headers},
                timeout=30,
            )
            seen[(endpoint, response.status_code)] = seen.get((endpoint, response.status_code), 0) + 1
            assert response.status_code in (200, 202, 400, 403, 404), (endpoint, body, response.text)
            answer = response.json()
            expected = {200: "action", 202: "reason"}.get(response.status_code, "error")
            assert expected in answer, answer
    for endpoint in ("dataverse", "enreach"):
        assert seen.get((endpoint, 200), 0) > 100 and seen.get((endpoint, 400), 0) > 100, seen


# -- issue 13: redelivery, expiry, verification, bad input, fallbacks ------------------------------


def _enreach_post(app, event_type, call_id, user=ENREACH_ID):
    body = _envelope(event_type, EntityId=user, RootEntityId=call_id)
    return _post(f"{app.url}/api/presence/enreach", body, {"Secret": SECRET})


def test_redelivery_after_a_failed_dnd_write_sets_dnd(app, world):
    from emulators._server import FaultRule

    world.dataverse.inject(FaultRule(status=500, path="CCaaS_ModifyAgentPresence", count=1))
    status, answer = _enreach_post(app, CALL_START, "c-1")
    assert status == 503, answer
    assert oc_presence(world) == AVAILABLE
    status, answer = _enreach_post(app, CALL_START, "c-1")  # the sender delivers it again
    assert status == 200, answer
    assert oc_presence(world) == DND


def test_redelivery_after_a_failed_call_end_restores(app, world):
    from emulators._server import FaultRule

    assert _enreach_post(app, CALL_START, "c-2")[0] == 200
    assert oc_presence(world) == DND
    world.dataverse.inject(FaultRule(status=500, path="CCaaS_ModifyAgentPresence", count=1))
    assert _enreach_post(app, CALL_END, "c-2")[0] == 503
    assert oc_presence(world) == DND
    status, answer = _enreach_post(app, CALL_END, "c-2")
    assert status == 200, answer
    assert oc_presence(world) == AVAILABLE


@pytest.mark.parametrize(
    "user", ["a/b", "..", ".", "x\\y#?", "\ud800", ENREACH_ID + "/availability", "~" + "f" * 40, "a b", "%2e%2e"]
)
def test_user_ids_that_are_not_id_shaped_are_400_and_reach_nothing(app, world, user):
    """Issue 21: an EntityId of ``..`` made the app call GET /users/availability/current. Enreach ids
    (GUIDs in every public source) go into URL paths: anything else is refused, naming the field."""
    for event_type in (CHANGED, CALL_START, CALL_END):
        status, answer = _enreach_post(app, event_type, "c-1", user=user)
        assert status == 400, (event_type, status, answer)
        assert answer["field"] in ("UserId", "EntityId")
    assert world.enreach.request_count() == 0 and world.dataverse.request_count() == 0


def test_a_malformed_enreach_id_in_dataverse_never_reaches_a_url(app, world):
    """The guard in the Enreach client's path building: an id mapped by hand in Dataverse."""
    world.dataverse.touch("systemusers", AGENT, **{CALL_SYNC.user_id_column: ".."})
    world.dataverse.set_presence(AGENT, BUSY)
    settle(world)
    assert world.dataverse.presence_webhook.delivered[-1][0] == 404  # the agent cannot be mapped: named
    assert world.enreach.request_count("/availability") == 0
    assert all("/users/availability" not in r["path"] for r in world.enreach.requests)


def test_hundreds_of_open_calls_are_capped_and_never_fail(app, world):
    """Lost call ends used to pile up until the state row was too large (PropertyValueTooLarge: 500)."""
    from presence_sync import runtime
    from presence_sync.state import MAX_ACTIVE_CALLS

    session = requests.Session()
    for i in range(300):
        body = _envelope(CALL_START, EntityId=ENREACH_ID, RootEntityId=f"{i:04d}-" + "c" * 120)
        response = session.post(
            f"{app.url}/api/presence/enreach",
            data=json.dumps(body),
            headers={"Content-Type": "application/json", "Secret": SECRET},
            timeout=30,
        )
        assert response.status_code == 200, (i, response.text)
    state = runtime.presence_sync()._store.read(AGENT)
    assert len(state.active_calls) == MAX_ACTIVE_CALLS
    assert oc_presence(world) == DND


def test_a_forged_agent_id_is_refused_with_no_enreach_write(app, world):
    from emulators.dataverse import _execution_context

    other = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4aff"
    world.dataverse.load({"systemusers": [{"systemuserid": other, "fullname": "Mallory's target"}]})
    world.dataverse.touch("systemusers", other, **{CALL_SYNC.user_id_column: "e1a0c001-0000-4000-8000-0000000000ff"})
    status_id = next(r["msdyn_agentstatusid"] for r in world.dataverse.rows("msdyn_agentstatuses"))  # AGENT's row
    forged = _execution_context(status_id, other, BUSY)  # the row is AGENT's, the body names another agent
    status, answer = _post(f"{app.url}/api/presence/dataverse", forged, {"X-Presence-Key": PRESENCE_KEY})
    assert status == 403 and answer["field"] == "msdyn_agentid"
    assert "PrimaryEntityId" in answer["error"] and other in answer["error"]
    unknown_row = _execution_context(str(uuid.uuid4()), AGENT, BUSY)
    status, answer = _post(f"{app.url}/api/presence/dataverse", unknown_row, {"X-Presence-Key": PRESENCE_KEY})
    assert status == 404 and answer["field"] == "PrimaryEntityId"
    assert enreach_puts(world) == 0 and enreach_status(world) == "Available"
    # The genuine notification, without the agent in the body, is served from the status row.
    genuine = _execution_context(status_id, AGENT, BUSY)
    genuine["PostEntityImages"] = []
    status, answer = _post(f"{app.url}/api/presence/dataverse", genuine, {"X-Presence-Key": PRESENCE_KEY})
    assert (status, answer["agent"]) == (200, AGENT)
    assert enreach_status(world) == "Busy"


@pytest.mark.parametrize("endpoint", ["dataverse", "enreach"])
def test_oversized_bodies_are_413_and_other_content_types_415(app, world, endpoint):
    headers = {"X-Presence-Key": PRESENCE_KEY, "Secret": SECRET}
    response = requests.post(
        f"{app.url}/api/presence/{endpoint}",
        data=b'{"x": "' + b"a" * 300_000 + b'"}',
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )
    assert response.status_code == 413 and response.json()["field"] == "body"
    response = requests.post(
        f"{app.url}/api/presence/{endpoint}", data=b"{}", headers={"Content-Type": "text/plain", **headers}, timeout=30
    )
    assert response.status_code == 415 and response.json()["field"] == "Content-Type"


def test_an_agent_with_no_presence_row_gets_the_enreach_availability_back_after_the_call(app, world):
    world.dataverse.table("msdyn_agentstatuses").rows.clear()  # never logged in to Omnichannel
    set_enreach(world, "Away")  # what the agent is in Enreach (the notification is mirrored: a row appears)
    settle(world)
    world.dataverse.table("msdyn_agentstatuses").rows.clear()
    assert _enreach_post(app, CALL_START, "n-1")[0] == 200
    assert oc_presence(world) == DND
    status, answer = _enreach_post(app, CALL_END, "n-1")
    assert status == 200 and "Enreach availability Away" in answer["detail"], answer
    assert oc_presence(world) == AWAY


def test_with_nothing_saved_and_an_unmapped_enreach_availability_the_default_comes_back(app, world):
    world.dataverse.table("msdyn_agentstatuses").rows.clear()
    with world.enreach.lock:
        world.enreach.availabilities.append({"Id": str(uuid.uuid4()), "UserID": ENREACH_ID, "EventTypeID": 99})
    assert _enreach_post(app, CALL_START, "n-2")[0] == 200
    status, answer = _enreach_post(app, CALL_END, "n-2")
    assert status == 200 and "default" in answer["detail"], answer
    assert oc_presence(world) == AVAILABLE  # PRESENCE_AFTER_CALL's default: never DND for good


def test_storage_down_answers_503_with_retry_after(world, monkeypatch):
    import socket
    import time

    from sandbox.services import AZURITE_ACCOUNT, AZURITE_KEY

    world.dataverse.load({"systemusers": [{"systemuserid": AGENT, "fullname": "Aino"}]})
    provision_app_schema(world.dataverse)
    world.dataverse.touch("systemusers", AGENT, **{CALL_SYNC.user_id_column: ENREACH_ID})
    world.dataverse.set_presence(AGENT, AVAILABLE)
    with socket.socket() as probe:  # a port nobody listens on: the storage account is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )
    settings = world.app_settings(
        {
            "ROUTING_API_KEY": KEY,
            "PRESENCE_WEBHOOK_KEY": PRESENCE_KEY,
            "AzureWebJobsStorage": down,
            "ENREACH_FIELD_MAP": json.dumps(FIELD_MAP),
            "ENREACH_WEBHOOK_SECRET": SECRET,
        }
    )
    from emulators.dataverse import _execution_context

    with serving_app(monkeypatch, settings) as host:
        for path, body, headers in (
            ("enreach", _envelope(CALL_START, EntityId=ENREACH_ID, RootEntityId="s-1"), {"Secret": SECRET}),
            ("enreach", _envelope(CHANGED, EntityId=ENREACH_ID), {"Secret": SECRET}),
            (
                "dataverse",
                _execution_context(
                    next(r["msdyn_agentstatusid"] for r in world.dataverse.rows("msdyn_agentstatuses")), AGENT, BUSY
                ),
                {"X-Presence-Key": PRESENCE_KEY},
            ),
        ):
            started = time.monotonic()
            response = requests.post(
                f"{host.url}/api/presence/{path}",
                data=json.dumps(body),
                headers={"Content-Type": "application/json", **headers},
                timeout=30,
            )
            print(f"storage down: {path} answered {response.status_code} in {time.monotonic() - started:.2f} s")
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0 and "storage" in response.json()["error"]
    assert oc_presence(world) == AVAILABLE  # nothing half-done: no DND without its state


def test_the_reconciliation_timer_finishes_a_write_no_redelivery_came_for(app, world):
    from emulators._server import FaultRule

    world.dataverse.inject(FaultRule(status=500, path="CCaaS_ModifyAgentPresence", count=1))
    assert _enreach_post(app, CALL_START, "r-1")[0] == 503  # and the sender gives up
    assert oc_presence(world) == AVAILABLE
    response = requests.post(f"{app.url}/admin/functions/reconcile_presence", timeout=60)
    assert response.status_code == 202
    assert oc_presence(world) == DND  # the call is still on: the owed DND is written
    assert _enreach_post(app, CALL_END, "r-1")[0] == 200
    assert oc_presence(world) == AVAILABLE


def test_a_token_service_outage_answers_503_with_retry_after(app, world):
    from emulators._server import FaultRule

    world.issuer.expire_all()  # the app's cached token is refused: it must fetch a new one
    world.tokens.inject(FaultRule(status=0, count=1000))  # and the token service is unreachable
    try:
        status, answer = _enreach_post(app, CALL_START, "t-1")
    finally:
        world.tokens.clear_faults()
    assert status == 503 and "deliver the event again" in answer["error"], answer
    assert _enreach_post(app, CALL_START, "t-1")[0] == 200  # the redelivery, once it is back
    assert oc_presence(world) == DND
