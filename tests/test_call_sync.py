"""Phone call sync and Enreach user id sync against both emulators and Azurite."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from call_sync.calls import CallSyncReport, UserDirectory, call_key, sync_calls, sync_phone_calls
from call_sync.runtime import lookup_for
from call_sync.runtime import options as options_for
from call_sync.users import sync_enreach_user_ids
from core.schema import CALL_SYNC
from core.settings import load_settings
from core.state import CheckpointStore
from emulators._protection import ServerLimits
from emulators._server import FaultRule
from routing.index_sync import sync_phone_index
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_client_for

UTC = UTC
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
AINO, MIKKO, ASSIGNEE = (f"4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a0{i}" for i in (1, 2, 9))
E_AINO, E_MIKKO, E_GHOST = "e-aino", "e-mikko", "e-ghost"
ACCOUNT = "a0000000-0000-4000-8000-000000000001"
CONTACT = "c0000000-0000-4000-8000-000000000001"

DATAVERSE = {
    "systemusers": [
        {
            "systemuserid": AINO,
            "fullname": "Aino Virtanen",
            "internalemailaddress": "Aino.Virtanen@example.fi",
            "mobilephone": "+358 40 111 0001",
        },
        {
            "systemuserid": MIKKO,
            "fullname": "Mikko Korhonen",
            "internalemailaddress": "mikko@corp.example.fi",
            "mobilephone": "040 111 0002",
        },
        {"systemuserid": ASSIGNEE, "fullname": "Call Desk", "internalemailaddress": "desk@example.fi"},
    ],
    "accounts": [{"accountid": ACCOUNT, "name": "Rautakauppa Oy", "telephone1": "+358 50 123 4567"}],
    "contacts": [{"contactid": CONTACT, "fullname": "Liisa", "mobilephone": "050-765 4321"}],
}
ENREACH_USERS = [
    {"Id": E_AINO, "Email": "aino.virtanen@example.fi", "MobileNumber": "+358401110001"},
    {"Id": E_MIKKO, "Email": "mikko.korhonen@example.fi", "MobileNumber": "+358401110002"},
]


def _call(
    call_id,
    user=E_AINO,
    *,
    minute=0,
    direction="in",
    number="+358501234567",
    seconds=120,
    classification="Work",
    mobile=False,
):
    start = NOW - timedelta(hours=2) + timedelta(minutes=minute)
    return {
        "CallId": call_id,
        "UserId": user,
        "StartTime": start.strftime("%Y-%m-%d %H:%M:%S"),
        "EndTime": (start + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S"),
        "Direction": direction,
        "OtherNumber": number,
        "DurationInSeconds": seconds,
        "Classification": classification,
        "IsMobile": mobile,
        "Modified": (start + timedelta(seconds=seconds + 1)).strftime("%Y-%m-%d %H:%M:%S"),
    }


@pytest.fixture(params=["single-stream", "parallel"])
def sync_env(request, world, azurite):
    if request.param == "parallel":  # Dataverse recommends 4 in flight: the writes go out in parallel
        world.dataverse.configure_limits(ServerLimits(dop_hint=4))
    world.dataverse.load(DATAVERSE)
    provision_app_schema(world.dataverse)
    world.dataverse.touch("systemusers", AINO, **{CALL_SYNC.user_id_column: E_AINO})
    world.enreach.load({"users": ENREACH_USERS})
    env = world.app_settings(
        {
            "ROUTING_API_KEY": "test-routing-key-0123456789",
            "AzureWebJobsStorage": azurite.connection_string,
            "CALL_SYNC_BATCH_SIZE": "3",
            "CALL_DURATION_LIMIT": "10",
        }
    )
    settings = load_settings(env)
    client = dataverse_client_for(settings)
    enreach = enreach_client_for(settings)
    lookup = lookup_for(settings, client)
    store = CheckpointStore(settings.storage_connection_string, table_name=f"c{uuid.uuid4().hex[:12]}")
    index_store = CheckpointStore(settings.storage_connection_string, table_name=f"i{uuid.uuid4().hex[:12]}")
    sync_phone_index(client, index_store, phone_columns=settings.routing_phone_columns, region="FI")
    return {"settings": settings, "client": client, "enreach": enreach, "lookup": lookup, "store": store, "env": env}


def _run(sync_env, **option_changes):
    from dataclasses import replace

    options = replace(options_for(sync_env["settings"]), **option_changes)
    return sync_phone_calls(
        sync_env["enreach"], sync_env["client"], sync_env["store"], sync_env["lookup"], options, now=NOW
    )


def _synced(world):
    return sorted(r[CALL_SYNC.call_id_column] for r in world.dataverse.rows("phonecalls"))


def _expected_keys(world, *, assignee=False):
    keys = []
    for call in world.enreach.calls:
        if call["Classification"] != "Work" or call["DurationInSeconds"] < 10:
            continue
        if call["UserId"] != E_AINO and not (call["IsMobile"] and call["UserId"] == E_MIKKO) and not assignee:
            continue
        keys.append(f"{call['CallId']}:{call['UserId']}")
    return sorted(keys)


def test_work_calls_become_completed_phonecalls_with_owner_parties_and_regarding(world, sync_env):
    world.enreach.load({"calls": [_call("in-1"), _call("out-1", minute=5, direction="out", number="+358507654321")]})
    report = _run(sync_env)
    assert (report.created, report.failed) == (2, 0)
    calls = {r[CALL_SYNC.call_id_column]: r for r in world.dataverse.rows("phonecalls")}
    incoming, outgoing = calls["in-1:e-aino"], calls["out-1:e-aino"]
    assert incoming["_ownerid_value"] == AINO and incoming["directioncode"] is False
    assert (incoming["statecode"], incoming["statuscode"]) == (1, 4)  # completed, Received
    assert (outgoing["statecode"], outgoing["statuscode"]) == (1, 2)  # completed, Made
    assert incoming["_regardingobjectid_value"] == ACCOUNT and outgoing["_regardingobjectid_value"] == CONTACT
    assert incoming["actualdurationminutes"] == 2 and incoming["phonenumber"] == "+358501234567"
    assert "Rautakauppa Oy" in incoming["subject"]
    parties = {
        (p["_activityid_value"], p["_partyid_value"], p["participationtypemask"])
        for p in world.dataverse.rows("activityparties")
    }
    assert (incoming["activityid"], ACCOUNT, 1) in parties and (incoming["activityid"], AINO, 2) in parties
    assert (outgoing["activityid"], AINO, 1) in parties and (outgoing["activityid"], CONTACT, 2) in parties


def test_private_unclassified_short_and_unmapped_calls_are_skipped(world, sync_env):
    world.enreach.load(
        {
            "calls": [
                _call("w"),
                _call("p", minute=1, classification="Private"),
                _call("u", minute=2, classification="Unclassified"),
                _call("short", minute=3, seconds=5),
                _call("ghost", user=E_GHOST, minute=4),
            ]
        }
    )
    report = _run(sync_env)
    assert _synced(world) == ["w:e-aino"]
    assert report.skipped == {
        "private call": 1,
        "unclassified call": 1,
        "shorter than CALL_DURATION_LIMIT": 1,
        "unmapped user": 1,
    }


def test_unmapped_calls_go_to_the_default_assignee(world, sync_env):
    world.enreach.load({"calls": [_call("ghost", user=E_GHOST)]})
    report = _run(sync_env, default_assignee=ASSIGNEE)
    assert report.created == 1
    assert world.dataverse.rows("phonecalls")[0]["_ownerid_value"] == ASSIGNEE


def test_mobile_calls_map_by_the_users_mobile_number(world, sync_env):
    world.enreach.load({"calls": [_call("m1", user=E_MIKKO, mobile=True), _call("m2", user=E_GHOST, mobile=True)]})
    report = _run(sync_env)
    owners = {r[CALL_SYNC.call_id_column]: r["_ownerid_value"] for r in world.dataverse.rows("phonecalls")}
    assert owners == {"m1:e-mikko": MIKKO}  # Mikko has no Enreach id in Dataverse, but his mobile matches
    assert report.skipped == {"unmapped mobile user": 1}


def test_unknown_or_ambiguous_caller_gets_no_regarding(world, sync_env):
    world.dataverse.load({"leads": [{"fullname": "Twin", "mobilephone": "+358501234567"}]})
    index_store = CheckpointStore(
        sync_env["settings"].storage_connection_string, table_name="i" + uuid.uuid4().hex[:12]
    )
    sync_phone_index(
        sync_env["client"], index_store, phone_columns=sync_env["settings"].routing_phone_columns, region="FI"
    )
    world.enreach.load({"calls": [_call("amb"), _call("unknown", minute=1, number="+358409999999")]})
    _run(sync_env)
    for row in world.dataverse.rows("phonecalls"):
        assert row.get("_regardingobjectid_value") is None
    assert len(world.dataverse.rows("activityparties")) == 2  # only the users


def test_rerun_replayed_timer_and_lost_checkpoint_never_duplicate(world, sync_env):
    world.enreach.load({"calls": [_call(f"c{i}", minute=i) for i in range(7)]})
    first = _run(sync_env)
    assert first.created == 7 and first.checkpoint == "2026-11-24T12:00:00Z"
    replay = _run(sync_env)  # the same timer tick again: its window starts 15 minutes back
    assert (replay.read, replay.created) == (0, 0)
    sync_env["store"] = CheckpointStore(
        sync_env["settings"].storage_connection_string, table_name=f"c{uuid.uuid4().hex[:12]}"
    )  # checkpoint lost
    again = _run(sync_env)
    assert (again.created, again.already_synced) == (0, 7)
    assert _synced(world) == _expected_keys(world)


def test_a_run_killed_after_a_partial_batch_then_rerun_leaves_every_call_once(world, sync_env):
    world.enreach.load({"calls": [_call(f"c{i}", minute=i) for i in range(8)]})
    settings = sync_env["settings"]
    kill = RuntimeError("killed")

    def die_after_first_batch(count):
        raise kill

    with pytest.raises(RuntimeError):
        sync_calls(
            sync_env["enreach"].calls(NOW - timedelta(days=1), NOW),
            client=sync_env["client"],
            lookup=sync_env["lookup"],
            users=UserDirectory.load(sync_env["client"], "FI"),
            enreach_users={},
            options=options_for(settings),
            report=CallSyncReport(),
            on_progress=die_after_first_batch,
        )
    assert len(_synced(world)) == 3  # one batch of three landed, nothing else, no checkpoint
    assert sync_env["store"].read("phone_calls").value is None
    report = _run(sync_env)
    assert (report.created, report.already_synced) == (5, 3)
    assert _synced(world) == _expected_keys(world)


def test_a_batch_applied_but_unanswered_is_retried_without_duplicates(world, sync_env):
    world.enreach.load({"calls": [_call(f"c{i}", minute=i) for i in range(5)]})
    world.dataverse.inject(FaultRule(status=0, path="$batch", method="POST", after=True, count=1))
    report = _run(sync_env)
    assert report.failed == 0 and _synced(world) == _expected_keys(world)


def test_two_runs_at_once_leave_every_call_once(world, sync_env):
    world.enreach.load({"calls": [_call(f"c{i:02d}", minute=i) for i in range(20)]})
    world.dataverse.inject(latency_ms=5)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(_run(sync_env))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reports) == 2 and all(r.failed == 0 for r in reports)
    assert sum(r.created for r in reports) == 20
    assert _synced(world) == _expected_keys(world)


def test_429_storms_and_an_expired_token_mid_run_are_survived(world, sync_env):
    world.enreach.load({"calls": [_call(f"c{i}", minute=i) for i in range(9)]})
    world.dataverse.inject(FaultRule(status=429, retry_after=0, path="$batch", count=3))
    world.enreach.inject(FaultRule(status=429, retry_after=0, path="/calls", count=2))
    expired = []

    def expire_once(count):
        if not expired:
            world.issuer.expire_all()
            expired.append(count)

    report = CallSyncReport()
    failed = sync_calls(
        sync_env["enreach"].calls(NOW - timedelta(days=1), NOW),
        client=sync_env["client"],
        lookup=sync_env["lookup"],
        users=UserDirectory.load(sync_env["client"], "FI"),
        enreach_users={},
        options=options_for(sync_env["settings"]),
        report=report,
        on_progress=expire_once,
    )
    assert failed == [] and report.created == 9 and expired
    assert _synced(world) == _expected_keys(world)


def test_a_failed_call_is_reported_and_retried_next_run_without_blocking_the_rest(world, sync_env):
    world.enreach.load({"calls": [_call("ok-1"), _call("bad", minute=1), _call("ok-2", minute=2)]})
    world.dataverse.tables["phonecalls"].columns.discard("phonenumber")  # this environment refuses the write
    report = _run(sync_env)
    assert report.failed == 3 and report.checkpoint == "2026-11-24T10:02:00Z"  # just before the first failed call
    world.dataverse.tables["phonecalls"].columns.add("phonenumber")
    # now only one call fails: a deleted owner cannot be bound
    world.enreach.calls[1]["UserId"] = E_GHOST
    retry = _run(sync_env, default_assignee=str(uuid.uuid4()))
    assert retry.created == 2 and retry.failed == 1
    assert retry.checkpoint == "2026-11-24T10:03:00Z"  # "bad" was modified 10:03:01: not moved past it
    assert sorted(_synced(world)) == ["ok-1:e-aino", "ok-2:e-aino"]
    third = _run(sync_env, default_assignee=ASSIGNEE)  # fixed: the failed call lands, the rest stay single
    assert (third.created, third.already_synced, third.failed) == (1, 2, 0)  # overlap re-reads both ok calls
    assert sorted(_synced(world)) == ["bad:e-ghost", "ok-1:e-aino", "ok-2:e-aino"]


def test_the_checkpoint_moves_and_the_window_overlaps(world, sync_env):
    first = _run(sync_env)
    assert first.window == ("2026-11-23T12:00:00Z", "2026-11-24T12:00:00Z")
    later = sync_phone_calls(
        sync_env["enreach"],
        sync_env["client"],
        sync_env["store"],
        sync_env["lookup"],
        options_for(sync_env["settings"]),
        now=NOW + timedelta(minutes=5),
    )
    assert later.window == ("2026-11-24T11:45:00Z", "2026-11-24T12:05:00Z")  # 15 min overlap


def test_user_id_sync_is_idempotent_and_reports_unmatched(world, sync_env):
    world.dataverse.touch("systemusers", MIKKO, **{CALL_SYNC.user_email_column: "Mikko.Korhonen@example.fi"})
    first = sync_enreach_user_ids(sync_env["enreach"], sync_env["client"])
    assert (first.updated, first.unchanged) == (1, 1)  # Mikko via the override; Aino already had hers
    assert first.unmatched == ["Call Desk"]
    users = {u["systemuserid"]: u.get(CALL_SYNC.user_id_column) for u in world.dataverse.rows("systemusers")}
    assert users[MIKKO] == E_MIKKO and users[AINO] == E_AINO
    world.dataverse.reset_requests()
    second = sync_enreach_user_ids(sync_env["enreach"], sync_env["client"])
    assert (second.updated, second.unchanged) == (0, 2)
    assert world.dataverse.request_count(method="PATCH") == 0 and world.dataverse.request_count("$batch") == 0


def test_call_key_is_per_user():
    from enreach import EnreachCall

    call = EnreachCall.from_api(_call("x"))
    assert call_key(call) == "x:e-aino"
