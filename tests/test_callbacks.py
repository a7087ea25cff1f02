"""Callback requests (issue 20): one phonecall per Enreach request, kept in step both ways, by the
poll, by notifications through the app's HTTP endpoint, or both. Real HTTP against the Enreach and
Dataverse emulators and Azurite; the emulator serves callbacks only in the mapping's names."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from bridge.settings import load_settings
from call_sync.runtime import lookup_for
from callbacks.runtime import options as options_for
from callbacks.sync import CHECKPOINT_NAME, CallbackSync
from core.schema import CALL_SYNC, CALLBACKS
from core.state import CheckpointStore
from enreach import CallbackFields
from routing.index_sync import sync_phone_index
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_client_for, serving_app

AGENT = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01"  # Dataverse user of Enreach user ENREACH_AGENT
ENREACH_AGENT = "e1a0c001-0000-4000-8000-000000000001"
ASSIGNEE = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a09"  # DEFAULT_CRM_ASSIGNEE
QUEUE = "0a0e0e01-3333-4000-8000-000000000001"
LIST = "cb1e0001-0000-4000-8000-000000000001"
ACCOUNT = "a0c0a001-1111-4000-8000-000000000001"
KNOWN = "+358501234567"  # the account's number
SECRET = "callback-webhook-secret-0123456789"
KEY = "test-routing-key-0123456789"


@pytest.fixture()
def tenant(world, azurite):
    world.dataverse.load(
        {
            "systemusers": [
                {"systemuserid": AGENT, "fullname": "Aino", CALL_SYNC.user_id_column: ENREACH_AGENT},
                {"systemuserid": ASSIGNEE, "fullname": "Callback desk"},
            ],
            "accounts": [{"accountid": ACCOUNT, "name": "Rautakauppa Oy", "telephone1": "+358 50 123 4567"}],
            "queues": [{"queueid": QUEUE, "name": "Sales callbacks"}],
        }
    )
    provision_app_schema(world.dataverse)
    settings = load_settings(app_settings(world, azurite))
    index_store = CheckpointStore(settings.storage_connection_string, table_name=f"i{uuid.uuid4().hex[:12]}")
    sync_phone_index(
        dataverse_client_for(settings), index_store, phone_columns=settings.matching.phone_columns, region="FI"
    )
    world.enreach.load(
        {
            "users": [{"Id": ENREACH_AGENT, "UserName": "aino@example.fi"}],
            "callbacklists": [{"ListId": LIST, "ListName": "Sales callbacks"}],
        }
    )
    yield world
    world.enreach.serve_callback_names(CallbackFields())
    world.enreach.configure_webhook(None)


def app_settings(world, azurite, **overrides: str) -> dict[str, str]:
    return world.app_settings(
        {
            "ROUTING_API_KEY": KEY,
            "AzureWebJobsStorage": azurite.connection_string,
            "BRIDGE_JOBS": "all",
            "DEFAULT_CRM_ASSIGNEE": ASSIGNEE,
            "CALLBACK_QUEUES": json.dumps({"Sales callbacks": QUEUE}),
            "ENREACH_WEBHOOK_SECRET": SECRET,
            **overrides,
        }
    )


def make_sync(world, azurite, *, session=None, enreach_session=None, table=None, **overrides: str) -> CallbackSync:
    settings = load_settings(app_settings(world, azurite, **overrides))
    client = dataverse_client_for(settings, session=session)
    extra = {"session": enreach_session} if enreach_session is not None else {}
    store = CheckpointStore(settings.storage_connection_string, table_name=table or f"c{uuid.uuid4().hex[:12]}")
    return CallbackSync(
        enreach_client_for(settings, **extra), client, lookup_for(settings, client), options_for(settings), store=store
    )


def activities(world) -> list[dict]:
    return [r for r in world.dataverse.rows("phonecalls") if r.get(CALLBACKS.request_id_column)]


def activity(world, request_id: str) -> dict:
    found = [r for r in activities(world) if r[CALLBACKS.request_id_column] == request_id]
    assert len(found) == 1, found
    return found[0]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the poll ----------------------------------------------------------------------------------


def test_a_request_polled_appears_once_with_owner_queue_regarding_number_and_time(tenant, azurite):
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    expires = due + timedelta(hours=22)
    assigned = tenant.enreach.add_callback(
        notify=False,
        item_list_id=LIST,
        number=KNOWN,
        note="Asks about order 1042",
        due=due,
        expires=expires,
        assigned_user=ENREACH_AGENT,
        attempts=1,
    )
    unassigned = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number="+358 50 123 4567")
    sync = make_sync(tenant, azurite)
    report = sync.poll()
    assert (report.read, report.created, report.failed, report.queued) == (2, 2, 0, 1), report.summary()

    mine = activity(tenant, assigned)
    assert mine["_ownerid_value"] == AGENT  # the assigned agent, mapped as call owners are
    assert mine["_regardingobjectid_value"] == ACCOUNT
    assert mine["phonenumber"] == KNOWN and mine["directioncode"] is True and mine["statecode"] == 0
    assert _utc(mine["scheduledstart"]) == due and _utc(mine["scheduledend"]) == expires
    assert "Asks about order 1042" in mine["description"]
    assert mine[CALLBACKS.list_column] == "Sales callbacks" and mine[CALLBACKS.attempts_column] == 1
    assert mine[CALLBACKS.state_column] == "open"
    parties = [p for p in tenant.dataverse.rows("activityparties") if p["_activityid_value"] == mine["activityid"]]
    assert {(p["_partyid_value"], p["participationtypemask"]) for p in parties} == {(AGENT, 1), (ACCOUNT, 2)}

    theirs = activity(tenant, unassigned)
    assert theirs["_ownerid_value"] == ASSIGNEE  # no agent: DEFAULT_CRM_ASSIGNEE, and the list's queue
    items = tenant.dataverse.rows("queueitems")
    assert [(i["_queueid_value"], i["_objectid_value"]) for i in items] == [(QUEUE, theirs["activityid"])]
    assert not [i for i in items if i["_objectid_value"] == mine["activityid"]]  # an agent's is not queued

    again = sync.poll()
    assert (again.created, again.unchanged, again.failed) == (0, 2, 0), again.summary()
    assert len(activities(tenant)) == 2
    checkpoint = sync.store.read(CHECKPOINT_NAME).value  # type: ignore[union-attr]
    assert checkpoint and _utc(checkpoint) > datetime.now(UTC) - timedelta(minutes=1)


def test_an_unknown_number_leaves_no_regarding_and_is_not_lost(tenant, azurite):
    request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number="+358409990000")
    report = make_sync(tenant, azurite).poll()
    assert (report.created, report.no_customer) == (1, 1)
    row = activity(tenant, request)
    assert row.get("_regardingobjectid_value") is None and row["phonenumber"] == "+358409990000"
    assert "+3584******00" in row["subject"]  # as the call sync: the masked number names it


def test_a_number_of_several_customers_is_settled_as_the_call_sync_settles_it(tenant, azurite):
    shared = "+358409991111"
    tenant.dataverse.load(
        {"contacts": [{"fullname": "Liisa", "mobilephone": shared}, {"fullname": "Pekka", "telephone1": shared}]}
    )
    settings = load_settings(app_settings(tenant, azurite))
    sync_phone_index(
        dataverse_client_for(settings),
        CheckpointStore(settings.storage_connection_string, table_name=f"i{uuid.uuid4().hex[:12]}"),
        phone_columns=settings.matching.phone_columns,
        region="FI",
    )
    request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=shared)
    report = make_sync(tenant, azurite).poll()
    assert (report.created, report.for_review) == (1, 1)
    row = activity(tenant, request)
    assert row.get("_regardingobjectid_value") is None  # never a guess
    assert "Several records match this number" in row[CALL_SYNC.review_column]
    parties = [p for p in tenant.dataverse.rows("activityparties") if p["_activityid_value"] == row["activityid"]]
    assert sorted(p["participationtypemask"] for p in parties) == [1, 2, 2]  # the owner; both contacts


def test_changes_in_enreach_update_the_open_activity(tenant, azurite):
    request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    sync = make_sync(tenant, azurite)
    sync.poll()
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    tenant.enreach.change_callback(request, notify=False, attempts=2, due=later, assigned_user=ENREACH_AGENT)
    report = sync.poll()
    assert report.updated == 1, report.summary()
    row = activity(tenant, request)
    assert row[CALLBACKS.attempts_column] == 2 and _utc(row["scheduledstart"]) == later
    assert row["_ownerid_value"] == AGENT


@pytest.mark.parametrize(("handled", "state", "status"), [(True, 1, 2), (False, 2, 3)])
def test_closing_in_enreach_completes_or_cancels_the_activity_and_says_why(tenant, azurite, handled, state, status):
    request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    sync = make_sync(tenant, azurite, CALLBACK_CLOSE_IN_ENREACH="on")
    sync.poll()
    tenant.enreach.close_callback(request, handled=handled, notify=False)
    report = sync.poll()
    assert (report.completed, report.cancelled) == ((1, 0) if handled else (0, 1)), report.summary()
    row = activity(tenant, request)
    assert (row["statecode"], row["statuscode"], row[CALLBACKS.state_column]) == (state, status, "closed")
    assert ("Handled in Enreach" if handled else "Closed in Enreach without being handled") in row["description"]
    # the app's own change is not news: no close is written back to Enreach, nothing more changes
    quiet = sync.poll()
    assert tenant.enreach.callbacks.closes == [] and quiet.closed_in_enreach == 0 and quiet.unchanged == 1


def test_a_request_closed_before_the_first_poll_is_created_closed(tenant, azurite):
    request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    tenant.enreach.close_callback(request, handled=True, notify=False)
    report = make_sync(tenant, azurite).poll()
    assert (report.created, report.completed) == (1, 1)
    row = activity(tenant, request)
    assert (row["statecode"], row[CALLBACKS.state_column]) == (1, "closed")
    assert tenant.dataverse.rows("queueitems") == []  # nothing to work from a queue


def test_an_expired_request_cancels_its_activity_though_nothing_changed_in_enreach(tenant, azurite):
    now = datetime.now(UTC).replace(microsecond=0)
    request = tenant.enreach.add_callback(
        notify=False, item_list_id=LIST, number=KNOWN, expires=now + timedelta(hours=1)
    )
    sync = make_sync(tenant, azurite)
    sync.poll(now=now)
    report = sync.poll(now=now + timedelta(hours=2))  # the request was not modified: only its expiry passed
    assert report.cancelled == 1, report.summary()
    row = activity(tenant, request)
    assert (row["statecode"], row["statuscode"]) == (2, 3) and "Expired in Enreach" in row["description"]


def test_completing_the_activity_closes_the_request_when_enabled_and_nothing_ping_pongs(tenant, azurite):
    request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    sync = make_sync(tenant, azurite, CALLBACK_CLOSE_IN_ENREACH="on")
    sync.poll()
    row = activity(tenant, request)
    sync.client.update("phonecalls", row["activityid"], {"statecode": 1, "statuscode": 2})  # the agent called back
    report = sync.poll()
    assert report.closed_in_enreach == 1, report.summary()
    assert [(i, b) for i, b in tenant.enreach.callbacks.closes] == [(request, {"ClosingReason": "Handled"})]
    assert tenant.enreach.callbacks.items[request]["closed"] is True
    row = activity(tenant, request)
    assert (row["statecode"], row["statuscode"], row[CALLBACKS.state_column]) == (1, 2, "closed")
    # Enreach now reports the request closed: the activity is left as the agent closed it, once
    quiet = sync.poll()
    assert (quiet.closed_in_enreach, quiet.completed, quiet.cancelled) == (0, 0, 0), quiet.summary()
    assert len(tenant.enreach.callbacks.closes) == 1


def test_completing_the_activity_leaves_the_request_open_while_the_write_is_off(tenant, azurite):
    request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    sync = make_sync(tenant, azurite)  # CALLBACK_CLOSE_IN_ENREACH is off by default
    sync.poll()
    sync.client.update("phonecalls", activity(tenant, request)["activityid"], {"statecode": 2, "statuscode": 3})
    report = sync.poll()
    assert (report.dynamics_only, report.closed_in_enreach) == (1, 0), report.summary()
    assert tenant.enreach.callbacks.closes == [] and tenant.enreach.callbacks.items[request]["closed"] is False
    assert activity(tenant, request)[CALLBACKS.state_column] == "dynamics"
    assert sync.poll().dynamics_only == 0  # counted once, not every run
    # switched on later: what was closed in Dynamics meanwhile is closed in Enreach then
    later = make_sync(tenant, azurite, CALLBACK_CLOSE_IN_ENREACH="on", table=sync.store._table_name)  # type: ignore[union-attr]
    assert later.poll().closed_in_enreach == 1
    assert tenant.enreach.callbacks.closes == [(request, {"ClosingReason": "Cancelled"})]


def test_a_failed_write_holds_the_checkpoint_and_the_next_poll_writes_it(tenant, azurite):
    from emulators._server import FaultRule

    request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    sync = make_sync(tenant, azurite)
    tenant.dataverse.inject(FaultRule(status=400, path="$batch", count=1))
    first = sync.poll()
    assert first.failed == 1 and first.outcome == "partial"
    checkpoint = _utc(sync.store.read(CHECKPOINT_NAME).value)  # type: ignore[union-attr]
    assert checkpoint < datetime.now(UTC) - timedelta(seconds=1)
    second = sync.poll()
    assert (second.created, second.failed) == (1, 0)
    activity(tenant, request)


# -- notifications through the app's one Enreach endpoint ------------------------------------------


@pytest.fixture()
def served(tenant, azurite, monkeypatch):
    def start(**overrides: str):
        return serving_app(monkeypatch, app_settings(tenant, azurite, **overrides))

    return start


def _fresh_store(table: str) -> None:
    from callbacks import runtime

    runtime.callback_sync().store._table_name = table  # type: ignore[union-attr]


def test_a_notification_alone_creates_the_activity(tenant, served):
    with served(CALLBACK_MODE="notify") as host:
        _fresh_store(f"n{uuid.uuid4().hex[:12]}")
        tenant.enreach.configure_webhook(f"{host.url}/api/presence/enreach", secret=SECRET)
        request = tenant.enreach.add_callback(item_list_id=LIST, number=KNOWN, assigned_user=ENREACH_AGENT)
        tenant.enreach.webhook.drain()
        status, payload = tenant.enreach.webhook.delivered[-1]
        assert status == 200 and payload["EventType"] == "CallbackCreated"
        row = activity(tenant, request)
        assert (row["_ownerid_value"], row["_regardingobjectid_value"]) == (AGENT, ACCOUNT)
        tenant.enreach.close_callback(request)  # CallbackClosed
        tenant.enreach.webhook.drain()
        assert tenant.enreach.webhook.delivered[-1][0] == 200
        assert activity(tenant, request)["statecode"] == 1


def test_poll_and_notification_together_make_no_duplicate(tenant, served, azurite):
    with served(CALLBACK_MODE="both") as host:
        table = f"b{uuid.uuid4().hex[:12]}"
        _fresh_store(table)
        tenant.enreach.configure_webhook(f"{host.url}/api/presence/enreach", secret=SECRET)
        request = tenant.enreach.add_callback(item_list_id=LIST, number=KNOWN)
        tenant.enreach.webhook.drain()
        assert tenant.enreach.webhook.delivered[-1][0] == 200
        response = requests.post(f"{host.url}/admin/functions/sync_callbacks", data=b"", timeout=30)
        assert response.status_code == 202
        report = CheckpointStore(azurite.connection_string, table_name=table).last_run(CHECKPOINT_NAME)
        assert report is not None and report.counts["unchanged"] == 1 and report.counts["created"] == 0
        # and the other way round: the poll first, then the notification arrives late
        second = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number="+358409990001")
        requests.post(f"{host.url}/admin/functions/sync_callbacks", data=b"", timeout=30)
        tenant.enreach.notify_callback("CallbackCreated", second)
        tenant.enreach.webhook.drain()
        assert tenant.enreach.webhook.delivered[-1][0] == 200
    assert len(activities(tenant)) == 2
    activity(tenant, request), activity(tenant, second)


def test_a_failing_notification_is_answered_503_and_its_redelivery_writes_it_once(tenant, served):
    from emulators._server import FaultRule

    with served(CALLBACK_MODE="notify") as host:
        _fresh_store(f"r{uuid.uuid4().hex[:12]}")
        tenant.enreach.configure_webhook(f"{host.url}/api/presence/enreach", secret=SECRET)
        tenant.dataverse.inject(FaultRule(status=503, path="$batch", count=99, retry_after=0))
        request = tenant.enreach.add_callback(item_list_id=LIST, number=KNOWN)
        tenant.enreach.webhook.drain()
        status, payload = tenant.enreach.webhook.delivered[-1]
        assert status == 503 and activities(tenant) == []
        tenant.dataverse.clear_faults()
        answer = requests.post(
            f"{host.url}/api/presence/enreach",
            data=json.dumps(payload),
            headers={"Content-Type": "application/json", "Secret": SECRET},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["created"] == 1
        again = requests.post(
            f"{host.url}/api/presence/enreach",
            data=json.dumps(payload),
            headers={"Content-Type": "application/json", "Secret": SECRET},
            timeout=30,
        )
        assert again.status_code == 200 and again.json().get("created") is None  # delivered twice: still one
    activity(tenant, request)


def test_the_503_names_retry_after(tenant, served):
    from emulators._server import FaultRule

    with served(CALLBACK_MODE="notify") as host:
        tenant.enreach.inject(FaultRule(status=503, path="/callbacks/", count=99, retry_after=0))
        request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
        answer = requests.post(
            f"{host.url}/api/presence/enreach",
            json={"EventType": "CallbackUpdated", "CallbackListItemId": request},
            headers={"Secret": SECRET},
            timeout=30,
        )
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "10"
        assert "deliver the notification again" in answer.json()["error"]


def test_notifications_are_refused_without_credentials_and_ignored_while_off(tenant, served):
    body = {"EventType": "CallbackCreated", "CallbackListItemId": "x1"}
    with served(BRIDGE_JOBS="routing,call_sync,user_ids,presence") as host:  # the default jobs
        refused = requests.post(f"{host.url}/api/presence/enreach", json=body, timeout=30)
        assert refused.status_code == 401
        ignored = requests.post(f"{host.url}/api/presence/enreach", json=body, headers={"Secret": SECRET}, timeout=30)
        assert ignored.status_code == 202 and "BRIDGE_JOBS" in ignored.json()["reason"]
    with served(CALLBACK_MODE="poll") as host:
        ignored = requests.post(f"{host.url}/api/presence/enreach", json=body, headers={"Secret": SECRET}, timeout=30)
        assert ignored.status_code == 202
    with served(CALLBACK_MODE="both") as host:  # (the environment keeps what an earlier block set)
        nameless = requests.post(
            f"{host.url}/api/presence/enreach",
            json={"EventType": "CallbackClosed"},
            headers={"Secret": SECRET},
            timeout=30,
        )
        assert nameless.status_code == 400 and nameless.json()["field"] == "CallbackListItemId"
        # other event types still reach the presence handler
        other = requests.post(
            f"{host.url}/api/presence/enreach",
            json={"EventType": "SomethingElse"},
            headers={"Secret": SECRET},
            timeout=30,
        )
        assert other.status_code == 202 and "callback" not in other.json()["reason"].lower()
    assert activities(tenant) == []


def test_the_timer_does_nothing_while_callbacks_are_off(tenant, served, azurite):
    tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    with served(BRIDGE_JOBS="routing,call_sync,user_ids,presence") as host:  # not registered at all
        assert requests.post(f"{host.url}/admin/functions/sync_callbacks", data=b"", timeout=30).status_code == 404
    with served(CALLBACK_MODE="notify") as host:
        requests.post(f"{host.url}/admin/functions/sync_callbacks", data=b"", timeout=30)
    assert activities(tenant) == []


# -- every callback name can be overridden -------------------------------------------------------


def _renamed(names: CallbackFields) -> CallbackFields:
    """Every name different from the default: a tenant whose records, paths and events differ."""
    changes = {}
    for item in fields(names):
        value = getattr(names, item.name)
        if isinstance(value, tuple):
            changes[item.name] = tuple(f"X{v}" for v in value[:1]) if value else ()
        elif item.name.endswith("_path"):
            changes[item.name] = "x/" + value
        else:
            changes[item.name] = "X" + value
    changes["handled_values"] = ("Done",)
    return replace(names, **changes)


def test_every_callback_name_can_be_overridden(tenant, served, azurite):
    custom = _renamed(CallbackFields())
    assert all(getattr(custom, f.name) != getattr(CallbackFields(), f.name) for f in fields(custom))
    tenant.enreach.serve_callback_names(custom)
    field_map = {"callbacks": {f.name: getattr(custom, f.name) for f in fields(custom)}}
    field_map["callbacks"] = {k: list(v) if isinstance(v, tuple) else v for k, v in field_map["callbacks"].items()}
    settings = {"ENREACH_FIELD_MAP": json.dumps(field_map), "CALLBACK_CLOSE_IN_ENREACH": "on"}

    # the defaults read nothing of this tenant (the paths answer 404)
    assert make_sync(tenant, azurite).enreach.raw_callback_lists() is None

    due = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    polled = tenant.enreach.add_callback(
        notify=False, item_list_id=LIST, number=KNOWN, note="renamed", due=due, assigned_user=ENREACH_AGENT, attempts=3
    )
    sync = make_sync(tenant, azurite, **settings)
    assert sync.poll().created == 1
    row = activity(tenant, polled)
    assert (row["_ownerid_value"], row["_regardingobjectid_value"], row[CALLBACKS.attempts_column]) == (
        AGENT,
        ACCOUNT,
        3,
    )
    assert _utc(row["scheduledstart"]) == due and "renamed" in row["description"]
    assert row[CALLBACKS.list_column] == "Sales callbacks"
    tenant.enreach.close_callback(polled, notify=False)  # resolution "Done": handled
    assert sync.poll().completed == 1

    with served(**settings) as host:  # notifications in the renamed event type and id field
        _fresh_store(f"o{uuid.uuid4().hex[:12]}")
        tenant.enreach.configure_webhook(f"{host.url}/api/presence/enreach", secret=SECRET)
        notified = tenant.enreach.add_callback(item_list_id=LIST, number=KNOWN)
        tenant.enreach.webhook.drain()
        status, payload = tenant.enreach.webhook.delivered[-1]
        assert status == 200 and payload["EventType"] == "XCallbackCreated" and "XCallbackListItemId" in payload
    row = activity(tenant, notified)
    sync.client.update("phonecalls", row["activityid"], {"statecode": 1, "statuscode": 2})
    assert sync.poll().closed_in_enreach == 1
    assert tenant.enreach.callbacks.closes == [(notified, {"XClosingReason": "Done"})]


def test_a_malformed_callback_override_is_named():
    from enreach import FieldMapError, parse_field_map

    with pytest.raises(FieldMapError, match=r"callbacks\.item_path"):
        parse_field_map('{"callbacks": {"item_path": "callbacks"}}')
    with pytest.raises(FieldMapError, match=r"callbacks\.id"):
        parse_field_map('{"callbacks": {"id": []}}')
    with pytest.raises(FieldMapError, match=r"callbacks\.nope"):
        parse_field_map('{"callbacks": {"nope": "x"}}')


def test_callbacks_are_off_by_default_and_their_settings_are_checked_and_named(world):
    from bridge.jobs import enabled_jobs
    from bridge.settings import JobDisabled
    from core.config import SettingsError

    base = world.app_settings({"ROUTING_API_KEY": KEY})
    base.pop("BRIDGE_JOBS", None)
    assert "callbacks" not in enabled_jobs({}) and "callbacks" in enabled_jobs({"BRIDGE_JOBS": "all"})
    settings = load_settings(base)
    assert "callbacks" not in settings.jobs and not settings.has("callbacks")
    with pytest.raises(JobDisabled, match="BRIDGE_JOBS"):
        settings.callbacks  # noqa: B018
    # named, but with no problem: the defaults
    on = load_settings({**base, "BRIDGE_JOBS": "callbacks"})
    section = on.callbacks
    assert (section.mode, section.close_in_enreach, section.schedule, section.initial_lookback_hours) == (
        "both",
        False,
        "0 * * * * *",
        168,
    )
    with pytest.raises(SettingsError) as error:
        load_settings(
            {
                **base,
                "BRIDGE_JOBS": "callbacks",
                "CALLBACK_MODE": "sometimes",
                "CALLBACK_QUEUES": '{"Sales": "not-a-guid"}',
                "CALLBACK_SYNC_SCHEDULE": "*/1",
                "CALLBACK_CLOSE_IN_ENREACH": "maybe",
            }
        )
    text = str(error.value)
    for name in ("CALLBACK_MODE", "CALLBACK_QUEUES['Sales']", "CALLBACK_SYNC_SCHEDULE", "CALLBACK_CLOSE_IN_ENREACH"):
        assert name in text, text
    # a deployment without the job does not read (or refuse) its settings
    load_settings({**base, "CALLBACK_MODE": "sometimes"})


# -- killed at every request of a run ---------------------------------------------------------------


class _Countdown:
    """One 'process' for both clients: the ``die_at``-th request (Enreach or Dataverse) kills it,
    optionally after that request was served but before its answer was read."""

    def __init__(self, die_at: int | None, lose_answer: bool = False) -> None:
        self.die_at, self.lose_answer, self.sent = die_at, lose_answer, 0


class _DyingSession(requests.Session):
    def __init__(self, countdown: _Countdown) -> None:
        super().__init__()
        self.countdown = countdown

    def request(self, *args, **kwargs):  # type: ignore[override]
        from tests.test_chaos import Killed

        self.countdown.sent += 1
        if self.countdown.die_at is not None and self.countdown.sent >= self.countdown.die_at:
            if self.countdown.sent == self.countdown.die_at and self.countdown.lose_answer:
                super().request(*args, **kwargs)
            raise Killed
        return super().request(*args, **kwargs)


def _chaos_world(world, azurite, table: str) -> tuple[list[str], str, str]:
    """Phase one (clean): two requests synced. Then in Enreach one is handled and three new ones
    arrive (assigned, queued, unknown number); in Dynamics an agent completes the other."""
    world.enreach.callbacks.items.clear()
    world.enreach.callbacks.closes.clear()
    for row in world.dataverse.rows("phonecalls"):
        world.dataverse.table("phonecalls").remove(row["activityid"])
    for row in world.dataverse.rows("queueitems"):
        world.dataverse.table("queueitems").remove(row["queueitemid"])
    handled = world.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    called_back = world.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
    first = make_sync(world, azurite, table=table, CALLBACK_CLOSE_IN_ENREACH="on")
    assert first.poll().created == 2
    world.enreach.close_callback(handled, notify=False)
    row = activity(world, called_back)
    first.client.update("phonecalls", row["activityid"], {"statecode": 1, "statuscode": 2})
    new = [
        world.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN, assigned_user=ENREACH_AGENT),
        world.enreach.add_callback(notify=False, item_list_id=LIST, number="+358 50 123 4567"),
        world.enreach.add_callback(notify=False, item_list_id=LIST, number="+358409990000"),
    ]
    return [handled, called_back, *new], handled, called_back


def _check(world, ids: list[str], handled: str, called_back: str) -> None:
    rows = activities(world)
    assert sorted(r[CALLBACKS.request_id_column] for r in rows) == sorted(ids)  # each exactly once
    assert activity(world, handled)["statecode"] == 1 and activity(world, handled)[CALLBACKS.state_column] == "closed"
    assert activity(world, called_back)[CALLBACKS.state_column] == "closed"
    assert world.enreach.callbacks.items[called_back]["closed"] is True
    assert all(r["statecode"] == 0 for r in rows if r[CALLBACKS.request_id_column] in ids[2:])
    queued = [i["_objectid_value"] for i in world.dataverse.rows("queueitems")]
    assert sorted(queued) == sorted(set(queued))  # never queued twice
    unassigned = {r["activityid"] for r in rows if r[CALLBACKS.request_id_column] != ids[2]}
    assert set(queued) == unassigned  # every request no agent has is in the list's queue, once


def test_killed_at_every_request_of_a_run_then_rerun_leaves_every_request_exactly_once(tenant, azurite):
    table = f"k{uuid.uuid4().hex[:12]}"
    _chaos_world(tenant, azurite, table)
    counting = _Countdown(None)
    clean = make_sync(
        tenant,
        azurite,
        session=_DyingSession(counting),
        enreach_session=_DyingSession(counting),
        table=table,
        CALLBACK_CLOSE_IN_ENREACH="on",
    )
    clean.poll()
    total = counting.sent
    assert total >= 8, total  # lists, changed requests, users, phonecalls, customers, $batch, expiry, closes
    from tests.test_chaos import Killed

    for die_at in range(1, total + 1):
        for lose_answer in (False, True):
            table = f"k{uuid.uuid4().hex[:12]}"
            ids, handled, called_back = _chaos_world(tenant, azurite, table)
            countdown = _Countdown(die_at, lose_answer)
            dying = make_sync(
                tenant,
                azurite,
                session=_DyingSession(countdown),
                enreach_session=_DyingSession(countdown),
                table=table,
                CALLBACK_CLOSE_IN_ENREACH="on",
            )
            with pytest.raises(Killed):
                dying.poll()
            rerun = make_sync(tenant, azurite, table=table, CALLBACK_CLOSE_IN_ENREACH="on").poll()
            assert rerun.failed == 0, (die_at, lose_answer, rerun.summary())
            try:
                _check(tenant, ids, handled, called_back)
            except AssertionError as error:
                raise AssertionError(f"killed at request {die_at} (answer lost: {lose_answer}): {error}") from error
    # and killed at the checkpoint write (Table storage), after everything else was written
    from tests.test_chaos import DyingStore

    table = f"k{uuid.uuid4().hex[:12]}"
    ids, handled, called_back = _chaos_world(tenant, azurite, table)
    dying = make_sync(tenant, azurite, table=table, CALLBACK_CLOSE_IN_ENREACH="on")
    dying.store = DyingStore(dying.store, die=True)  # type: ignore[arg-type]
    with pytest.raises(Killed):
        dying.poll(now=datetime.now(UTC) + timedelta(seconds=5))  # a later second: the checkpoint moves
    assert make_sync(tenant, azurite, table=table, CALLBACK_CLOSE_IN_ENREACH="on").poll().failed == 0
    _check(tenant, ids, handled, called_back)


def test_without_the_presence_job_callback_notifications_have_the_endpoint_to_themselves(tenant, served):
    with served(BRIDGE_JOBS="callbacks", CALLBACK_MODE="notify") as host:
        _fresh_store(f"a{uuid.uuid4().hex[:12]}")
        url = f"{host.url}/api/presence/enreach"
        tenant.enreach.configure_webhook(url, secret=SECRET)
        request = tenant.enreach.add_callback(item_list_id=LIST, number=KNOWN)
        tenant.enreach.webhook.drain()
        assert tenant.enreach.webhook.delivered[-1][0] == 200
        activity(tenant, request)
        body = {"EventType": "CallbackCreated", "CallbackListItemId": request}
        assert requests.post(url, json=body, timeout=30).status_code == 401  # no Secret
        other = requests.post(url, json={"EventType": "UserAvailability"}, headers={"Secret": SECRET}, timeout=30)
        assert other.status_code == 202 and "presence job is off" in other.json()["reason"]
        text = requests.post(url, data=b"hello", headers={"Secret": SECRET, "Content-Type": "text/plain"}, timeout=30)
        assert text.status_code == 415


def test_a_notification_for_an_id_enreach_does_not_know_cancels_nothing(tenant, served):
    """Found by an attack: a CallbackClosed naming the real id in upper case (Enreach answered 404)
    cancelled the open activity. A notification is a hint; only the poll cancels a request gone."""
    with served(CALLBACK_MODE="both") as host:
        _fresh_store(f"g{uuid.uuid4().hex[:12]}")
        request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
        assert requests.post(f"{host.url}/admin/functions/sync_callbacks", data=b"", timeout=30).status_code == 202
        assert activity(tenant, request)["statecode"] == 0
        for forged in (request.upper(), "nonexist"):
            answer = requests.post(
                f"{host.url}/api/presence/enreach",
                json={"EventType": "CallbackClosed", "CallbackListItemId": forged},
                headers={"Secret": SECRET},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        assert activity(tenant, request)["statecode"] == 0  # still open, as it is in Enreach


@pytest.mark.parametrize("forged", ["..", ".", "a/b", "x@y.fi", "a" * 65, "ü"])
def test_a_callback_id_that_is_not_id_shaped_is_refused_naming_the_field(tenant, served, forged):
    """Found by an attack: `..` made the app GET the API root and `.` the whole list (503 forever)."""
    with served(CALLBACK_MODE="notify") as host:
        tenant.enreach.reset_requests()
        answer = requests.post(
            f"{host.url}/api/presence/enreach",
            json={"EventType": "CallbackUpdated", "CallbackListItemId": forged},
            headers={"Secret": SECRET},
            timeout=30,
        )
        assert answer.status_code == 400 and answer.json()["field"] == "CallbackListItemId", answer.text
        assert not [r for r in tenant.enreach.requests if "callback" in r["path"].lower() or r["path"] == "/"]


def test_a_slow_enreach_gets_a_503_within_the_budget_and_the_redelivery_finds_it_done(tenant, served):
    """Found by an attack: with Enreach answering after 30 s a callback notification was answered
    after 56 s (Enreach waits about 5). Now 503 + Retry-After within PRESENCE_TIME_BUDGET_SECONDS;
    the work goes on, and the redelivery writes nothing twice."""
    with served(CALLBACK_MODE="notify", PRESENCE_TIME_BUDGET_SECONDS="1") as host:
        _fresh_store(f"s{uuid.uuid4().hex[:12]}")
        request = tenant.enreach.add_callback(notify=False, item_list_id=LIST, number=KNOWN)
        tenant.enreach.inject(latency_ms=2500)
        body = {"EventType": "CallbackCreated", "CallbackListItemId": request}
        url, headers = f"{host.url}/api/presence/enreach", {"Secret": SECRET}
        slow = requests.post(url, json=body, headers=headers, timeout=30)
        assert slow.status_code == 503 and slow.headers["Retry-After"] == "10", slow.text
        tenant.enreach.inject(latency_ms=0)
        deadline = time.monotonic() + 30
        while not activities(tenant) and time.monotonic() < deadline:  # the work past the budget finishes
            time.sleep(0.2)
        again = requests.post(url, json=body, headers=headers, timeout=30)
        assert again.status_code == 200 and again.json().get("created") is None, again.text
    assert len(activities(tenant)) == 1
