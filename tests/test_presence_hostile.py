"""Issue 21, found with hostile input and faults: a storage table that vanishes, stale and replayed
notifications, the shapes a notification may take, what reaches the log, each endpoint's own
credential, and the presence webhook's time budget. Everything over HTTP: the app's functions served
on loopback, the Dataverse and Enreach emulators, and Azurite."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.services import Azurite
from tests import test_presence
from tests.helpers import serving_app
from tests.test_presence import (
    AVAILABLE,
    AWAY,
    CALL_END,
    CALL_START,
    CHANGED,
    DND,
    ENREACH_ID,
    KEY,
    SECRET,
    TYPE_IDS,
    _post,
    oc_presence,
    serving_presence,
    settle,
)

app = test_presence.app  # the fixture: the app served with this tenant's mapping, state in Azurite
HEADERS = {"Secret": SECRET}


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _call_event(event_type, call_id, *, when=None, user=ENREACH_ID):
    return {
        "Id": str(uuid.uuid4()),
        "Timestamp": _at(when or datetime.now(UTC)),
        "RootEntityType": "Call",
        "RootEntityId": call_id,
        "EntityType": "User",
        "EntityId": user,
        "EventType": event_type,
    }


def _send(host, body, headers=HEADERS):
    return _post(f"{host.url}/api/presence/enreach", body, headers)


def _deliver(host, body):
    """As Enreach does: a 503 (e.g. past the time budget on a loaded machine) is delivered again."""
    for _ in range(5):
        status, answer = _send(host, body)
        if status != 503:
            return status, answer
        time.sleep(0.5)
    return status, answer


# -- a storage table that vanishes ------------------------------------------------------------


@pytest.fixture()
def own_azurite():
    """An Azurite of this test's own: it is restarted empty mid-traffic."""
    if Azurite.executable() is None:
        pytest.fail("Azurite is not installed: run `npm ci` (make test does it)")
    started = Azurite().start()
    yield started
    started.stop()


def test_azurite_restarted_empty_mid_traffic(world, monkeypatch, own_azurite):
    """The next redelivery succeeds without an app restart (the table is created again), and the
    redelivered start of a call that already ended puts nobody in DND, though the state is gone."""
    with serving_presence(world, monkeypatch, own_azurite.connection_string) as host:
        assert _send(host, _call_event(CALL_START, "c-1"))[0] == 200
        assert oc_presence(world) == DND
        assert _send(host, _call_event(CALL_END, "c-1"))[0] == 200
        assert oc_presence(world) == AVAILABLE

        start = _call_event(CALL_START, "c-2")
        own_azurite.stop()  # storage fails while the call starts: Enreach is answered 503
        status, answer = _send(host, start)
        assert status == 503, answer
        own_azurite.restart()  # back, empty: every table is gone
        status, answer = _send(host, _call_event(CALL_END, "c-2"))  # the end arrives first
        assert status == 200, answer  # the table was created again, no restart
        status, answer = _send(host, start)  # the failed start, redelivered after the call's end
        assert status == 200 and answer["action"] == "recorded" and "late" in answer["detail"], answer
        assert oc_presence(world) == AVAILABLE

        own_azurite.restart()  # and once more, empty, before a redelivery older than the bound
        old = _call_event(CALL_START, "c-3", when=datetime.now(UTC) - timedelta(hours=1))
        status, answer = _send(host, old)
        assert status == 200 and answer["action"] == "stale", answer
        assert oc_presence(world) == AVAILABLE

        status, answer = _send(host, _call_event(CALL_START, "c-4"))  # a fresh call still works
        assert status == 200 and answer["action"] == "dnd set", answer
        assert oc_presence(world) == DND


def test_checkpoint_and_parking_tables_are_created_again(world, own_azurite):
    from call_sync.parking import ParkedCalls
    from core.state import CheckpointStore, RunRecord

    checkpoints, parking = CheckpointStore(own_azurite.connection_string), ParkedCalls(own_azurite.connection_string)
    recreated: list[str] = []
    checkpoints.on_recreate = parking.on_recreate = recreated.append
    checkpoints.write("calls", "2026-12-01T00:00:00Z", expected=checkpoints.read("calls"))
    assert parking.all() == []
    own_azurite.restart()
    assert checkpoints.read("calls").value is None  # gone with the storage, and readable again
    checkpoints.write("calls", "2026-12-02T00:00:00Z", expected=checkpoints.read("calls"))
    assert checkpoints.read("calls").value == "2026-12-02T00:00:00Z"
    assert parking.all() == []
    own_azurite.restart()
    checkpoints.save_run("calls", RunRecord("2026-12-02T00:00:00Z", "ok", "", {}))
    assert sorted(recreated) == ["bridgecheckpoints", "bridgecheckpoints", "bridgeparkedcalls"]


def test_ended_calls_are_remembered_past_fifty(app, world):
    """Only the last 50 ended calls were remembered: the 51st call back started DND again."""
    for i in range(60):
        assert _deliver(app, _call_event(CALL_START, f"n-{i}"))[0] == 200
        assert _deliver(app, _call_event(CALL_END, f"n-{i}"))[0] == 200
        settle(world)  # Dataverse's webhooks of the app's own writes come back before the next call
    status, answer = _deliver(app, _call_event(CALL_START, "n-0"))  # a replay of the first one
    assert status == 200 and "late" in answer["detail"], answer
    assert oc_presence(world) == AVAILABLE


# -- stale and replayed notifications ---------------------------------------------------------


def test_a_stale_call_start_is_acknowledged_and_sets_no_dnd(app, world):
    replay = _call_event(CALL_START, "new-call-id", when=datetime(2020, 1, 1, tzinfo=UTC))
    status, answer = _send(app, replay)
    assert status == 200 and answer["action"] == "stale", answer
    assert "PRESENCE_MAX_EVENT_AGE_SECONDS" in answer["detail"]
    assert oc_presence(world) == AVAILABLE
    assert world.dataverse.request_count("CCaaS_ModifyAgentPresence") == 0


def test_a_late_call_end_still_ends_the_call(app, world):
    """A call end past the bound can only lift DND, never set it: it is acted on."""
    assert _send(app, _call_event(CALL_START, "long"))[0] == 200
    assert oc_presence(world) == DND
    status, answer = _send(app, _call_event(CALL_END, "long", when=datetime.now(UTC) - timedelta(hours=1)))
    assert status == 200 and answer["action"] == "restored", answer
    assert oc_presence(world) == AVAILABLE


@pytest.mark.parametrize("stamp", ["yesterday", "2026-13-01T00:00:00Z", "x" * 50])
def test_an_unreadable_timestamp_is_400_naming_it(app, world, stamp):
    body = {**_call_event(CALL_START, "c-1"), "Timestamp": stamp}
    status, answer = _send(app, body)
    assert (status, answer["field"]) == (400, "Timestamp")


# -- shapes of a notification -----------------------------------------------------------------


def test_a_flat_notification_is_accepted(app, world):
    """The event's own fields at the top, no envelope (names through the mapping's lists)."""
    world.enreach.set_availability(ENREACH_ID, TYPE_IDS["Away"])  # without its notification:
    world.enreach.webhook.url = None
    status, answer = _send(app, {"EventType": CHANGED, "UserId": ENREACH_ID})
    assert status == 200 and answer["action"] == "mirrored", answer
    assert oc_presence(world) == AWAY
    status, answer = _send(
        app, {"eventType": CALL_START, "userId": ENREACH_ID, "callId": "flat-1", "timestamp": _at(datetime.now(UTC))}
    )
    assert status == 200 and answer["action"] == "dnd set", answer


def test_a_nested_payload_is_accepted(app, world):
    body = {
        "EventType": CALL_START,
        "Timestamp": _at(datetime.now(UTC)),
        "Data": {"userId": ENREACH_ID, "callId": "n1"},
    }
    status, answer = _send(app, body)
    assert status == 200 and answer["action"] == "dnd set", answer
    nested_bad = {"EventType": CALL_START, "Data": {"userId": "..", "callId": "n2"}}
    status, answer = _send(app, nested_bad)
    assert (status, answer["field"]) == (400, "userId")


def test_an_unknown_type_is_logged_once_by_shape_never_values(app, world, caplog):
    caplog.set_level(logging.INFO)
    body = {
        "EventType": "UserWrapUpStarted",
        "userId": ENREACH_ID,
        "callerNumber": "+358501234567",
        "note": "lunch with Maija",
        "endTime": "9999-12-31T23:59:59",
        "queue": {"id": "q-1", "numbers": ["+358942420000"], "priority": 2, "open": True, "score": 1.5},
        "gone": None,
    }
    for _ in range(3):
        status, answer = _send(app, body)
        assert status == 202 and answer["event_type"] == "UserWrapUpStarted"
    lines = [r.getMessage() for r in caplog.records if "enreach_notification_unmapped" in r.getMessage()]
    assert len(lines) == 1
    logged = json.loads(lines[0])
    assert logged["shape"] == {
        "EventType": "str",
        "userId": "str",
        "callerNumber": "str",
        "note": "str",
        "endTime": "str",
        "queue": {"id": "str", "numbers": ["str"], "priority": "int", "open": "bool", "score": "float"},
        "gone": "null",
    }
    for value in ("+358501234567", "lunch with Maija", "9999-12-31", "q-1", "+358942420000", ENREACH_ID):
        assert value not in caplog.text


def test_control_characters_in_field_names_never_start_a_log_line(app, world, caplog):
    """A key holding a newline and a fake timestamp forged a log line at column 0; NUL bytes and
    lone surrogates reached the log."""
    caplog.set_level(logging.DEBUG)
    forged = "x\n2026-12-06 07:00:00 ERROR forged line\r\x00\x1b[31m\u2028\u0085\ud800"
    body = {"EventType": "UnmappedForLogs", "userId": ENREACH_ID, forged: 1, "nested": {forged: "v"}}
    status, _ = _send(app, body)
    assert status == 202
    status, _ = _send(app, {**_call_event(CALL_START, "c\n1"), forged: "v"})  # refused: the id is named
    assert status == 400
    assert caplog.records
    for record in caplog.records:
        message = record.getMessage()
        for bad in ("\n", "\r", "\x00", "\x1b", "\u2028", "\u0085", "\ud800"):
            assert bad not in message, (bad, message)
    assert "forged line" in caplog.text  # escaped, on its line, not dropped silently


# -- each endpoint its own credential ---------------------------------------------------------


def test_the_routing_key_is_refused_on_the_presence_endpoint(app, world):
    body = _call_event(CALL_START, "c-1")
    for headers in ({"X-Benemen-APIKey": KEY}, {"Authorization": "Basic ZW5yZWFjaDpwdw=="}, {}):
        status, _answer = _send(app, body, headers)
        assert status == 401, headers
    assert world.dataverse.request_count() == 0 and oc_presence(world) == AVAILABLE


def test_the_presence_endpoint_is_closed_without_its_secret(world, azurite, monkeypatch):
    settings = world.app_settings(
        {
            "ROUTING_API_KEY": KEY,
            "PRESENCE_WEBHOOK_KEY": "test-presence-key-0123456789",
            "AzureWebJobsStorage": azurite.connection_string,
        }
    )
    with serving_app(monkeypatch, settings) as host:
        status, answer = _send(host, _call_event(CALL_START, "c-1"), {"X-Benemen-APIKey": KEY, "Secret": ""})
    assert status == 401 and "ENREACH_WEBHOOK_SECRET" in answer["error"]


EXPLAIN_KEY = "operators-explain-key-0123456789"


@pytest.mark.parametrize("configured", [None, EXPLAIN_KEY])
def test_explain_needs_its_own_key(world, azurite, monkeypatch, configured):
    overrides = {"ROUTING_API_KEY": KEY, "AzureWebJobsStorage": azurite.connection_string}
    if configured:
        overrides["ROUTING_EXPLAIN_KEY"] = configured
    body = {"anum": "+358501234567", "bnum": "+358942420000"}
    base = {"X-Benemen-APIKey": KEY}
    with serving_app(monkeypatch, world.app_settings(overrides)) as host:
        url = f"{host.url}/api/routing?explain=true"
        refused = [_post(url, body, {**base, **extra}) for extra in ({}, {"X-Explain-Key": "wrong-key-0123456789"})]
        granted = _post(url, body, {**base, "X-Explain-Key": EXPLAIN_KEY})
        plain = _post(f"{host.url}/api/routing", body, base)  # routing itself is untouched
    for status, answer in refused:
        assert (status, answer["field"]) == (403, "explain")
    if configured:
        assert granted[0] == 200 and "answer" in granted[1]
    else:
        assert granted[0] == 403 and "explain is off" in granted[1]["error"]
    assert plain[0] in (200, 204)


# -- the presence webhook's time budget -------------------------------------------------------


def test_the_webhook_answers_within_its_budget_while_dataverse_throttles(world, azurite, monkeypatch):
    """Dataverse answers 429 with a 10 s Retry-After: Enreach gets 503 with Retry-After within the
    budget (PRESENCE_TIME_BUDGET_SECONDS), not after 10 s; the redelivery does the job."""
    from emulators._server import FaultRule
    from presence_sync.http import wait_idle

    extra = {"PRESENCE_TIME_BUDGET_SECONDS": "1"}
    with serving_presence(world, monkeypatch, azurite.connection_string, **extra) as host:
        world.dataverse.inject(FaultRule(status=429, retry_after=10, path="msdyn_agentstatuses", count=1))
        event = _call_event(CALL_START, "slow-1")
        started = time.monotonic()
        status, answer = _send(host, event)
        answered_after = time.monotonic() - started
        assert status == 503 and "PRESENCE_TIME_BUDGET_SECONDS" in answer["error"], answer
        assert answered_after < 10  # a bound only: before the fault's Retry-After had passed
        status, answer = _send(host, event)  # Enreach delivers it again
        assert status == 200 and answer["action"] == "dnd set", answer
        assert wait_idle(30)  # the first delivery's work finishes in the background, harmlessly
    assert oc_presence(world) == DND
    assert world.dataverse.request_count("CCaaS_ModifyAgentPresence") == 1


def test_the_503_past_the_budget_carries_retry_after(world, azurite, monkeypatch):
    import requests

    from emulators._server import FaultRule
    from presence_sync.http import wait_idle

    with serving_presence(world, monkeypatch, azurite.connection_string, PRESENCE_TIME_BUDGET_SECONDS="0.5") as host:
        world.dataverse.inject(FaultRule(status=429, retry_after=3, path="msdyn_agentstatuses", count=1))
        response = requests.post(
            f"{host.url}/api/presence/enreach",
            data=json.dumps(_call_event(CALL_START, "slow-2")),
            headers={"Content-Type": "application/json", **HEADERS},
            timeout=30,
        )
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
        assert wait_idle(30)


def test_the_call_sync_timer_runs_on_after_azurite_restarted_empty(world, monkeypatch, own_azurite, caplog):
    """``sync_phone_calls`` on another instance failed the same way (its checkpoint table was gone):
    the next run succeeds without a restart."""
    from sandbox.services import provision_app_schema

    caplog.set_level(logging.INFO)
    provision_app_schema(world.dataverse)
    settings = world.app_settings({"ROUTING_API_KEY": KEY, "AzureWebJobsStorage": own_azurite.connection_string})
    with serving_app(monkeypatch, settings) as host:
        host.run_function("sync_phone_calls")
        own_azurite.restart()
        caplog.clear()
        host.run_function("sync_phone_calls")  # raised TableNotFound (503s) until the app restarted
    runs = [json.loads(r.getMessage()) for r in caplog.records if '"event": "sync_phone_calls"' in r.getMessage()]
    assert runs and runs[-1]["outcome"] in ("ok", "partial"), runs
    assert "created again" in caplog.text
