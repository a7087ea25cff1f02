"""Issue 23 over real HTTP (Dataverse and Enreach emulators, Azurite): missed calls become one
follow-up per caller, missed queue calls land in the mapped queue, unknown callers reach a view
(and, as an option, one lead per number), a call lands on the only open case, and transcripts are
attached as notes once (and go with the activity when the call turns Private).

Dataverse facts relied on (MicrosoftDocs/powerapps-docs): alternate keys and "create only" with
``If-None-Match: *`` (use-alternate-key-reference-record.md, perform-conditional-operations-using-web-api.md),
change sets are atomic (execute-batch-operations-using-web-api.md), notes (annotation) are deleted
with their activity (configure-entity-relationship-cascading-behavior.md: parental), a system view
runs with ``?savedQuery=<id>`` (retrieve-and-execute-predefined-queries.md).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bridge.settings import load_settings
from call_sync.calls import sync_phone_calls
from call_sync.parking import ParkedCalls
from call_sync.runtime import lookup_for
from call_sync.runtime import options as options_for
from call_sync.transcripts import PendingTranscripts, note_id
from core.schema import CALL_SYNC, FOLLOW_UPS
from core.state import CheckpointStore
from routing.index_sync import sync_phone_index
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_call, enreach_client_for, enreach_users

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
AINO, OWNER = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01", "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a07"
E_AINO = "e-aino"
AINO_LOGIN = "aino.virtanen@example.fi"
ACCOUNT = "a0000000-0000-4000-8000-000000000001"
CONTACT = "c0000000-0000-4000-8000-000000000001"
CASE_1, CASE_2 = "10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002"
QUEUE_E, QUEUE_D = "7c1e0000-0000-4000-8000-0000000000e1", "0b5e0000-0000-4000-8000-0000000000d1"
KNOWN, LIISA, STRANGER, SWITCHBOARD = "+358501234567", "+358507654321", "+358409998877", "+358942420000"

DATAVERSE = {
    "systemusers": [
        {"systemuserid": AINO, "fullname": "Aino Virtanen", "internalemailaddress": AINO_LOGIN},
        {"systemuserid": OWNER, "fullname": "Account Owner", "internalemailaddress": "owner@example.fi"},
    ],
    "accounts": [
        {"accountid": ACCOUNT, "name": "Rautakauppa Oy", "telephone1": "+358 50 123 4567", "_ownerid_value": OWNER}
    ],
    "contacts": [{"contactid": CONTACT, "fullname": "Liisa", "mobilephone": "050-765 4321"}],
    "queues": [{"queueid": QUEUE_D, "name": "Support"}],
}


@pytest.fixture()
def env(world, azurite):
    world.dataverse.load(DATAVERSE)
    provision_app_schema(world.dataverse)
    world.dataverse.touch("systemusers", AINO, **{CALL_SYNC.user_id_column: E_AINO})
    world.enreach.load(enreach_users((E_AINO, AINO_LOGIN, "+358401110001")))
    app = world.app_settings(
        {
            "ROUTING_API_KEY": "test-routing-key-0123456789",
            "AzureWebJobsStorage": azurite.connection_string,
            "CALL_SYNC_BATCH_SIZE": "3",
            "CALL_SYNC_QUEUE_MAP": f'{{"{QUEUE_E}": "{QUEUE_D}"}}',
            "CALL_SYNC_BLOCKED_NUMBERS": "+358 9 4242 0000",
        }
    )
    settings = load_settings(app)
    client = dataverse_client_for(settings)
    suffix = uuid.uuid4().hex[:12]
    sync_phone_index(
        client,
        CheckpointStore(settings.storage_connection_string, table_name=f"i{suffix}"),
        phone_columns=settings.matching.phone_columns,
        region="FI",
    )
    return {
        "world": world,
        "settings": settings,
        "client": client,
        "store": CheckpointStore(settings.storage_connection_string, table_name=f"c{suffix}"),
        "parking": ParkedCalls(settings.storage_connection_string, table_name=f"p{suffix}"),
        "pending": PendingTranscripts(settings.storage_connection_string, table_name=f"p{suffix}"),
    }


def _call(call_id, *, minute=0, number=KNOWN, missed=False, outgoing=False, transcript=None, **extra):
    start = NOW - timedelta(hours=2) + timedelta(minutes=minute)
    record = enreach_call(call_id, AINO_LOGIN, start, seconds=0 if missed else 120, outgoing=outgoing, number=number)
    record["EndResult"] = 1 if missed else 0
    record["$modified"] = (start + timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S")
    if transcript:
        record["TranscriptId"] = transcript
    record.update(extra)
    return record


def _run(env, now=NOW, **changes):
    settings = env["settings"]
    options = replace(options_for(settings), **changes)
    client = dataverse_client_for(settings)
    return sync_phone_calls(
        enreach_client_for(settings),
        client,
        env["store"],
        lookup_for(settings, client),
        options,
        parking=env["parking"],
        now=now,
        transcripts=env["pending"],
    )


def _tasks(world):
    return world.dataverse.rows("tasks")


def _calls(world):
    return {r[CALL_SYNC.call_id_column]: r for r in world.dataverse.rows("phonecalls")}


def test_a_missed_call_from_a_known_customer_is_one_missed_phonecall_and_one_follow_up(env):
    world = env["world"]
    world.enreach.load({"calls": [_call("m1", missed=True)]})
    report = _run(env)
    assert (report.missed, report.follow_ups_opened, report.failed) == (1, 1, 0)
    call = _calls(world)["m1:e-aino"]
    assert call["subject"] == "Missed call from Rautakauppa Oy"
    assert call[FOLLOW_UPS.result_column] == FOLLOW_UPS.missed_value and call["statecode"] == 1
    [task] = _tasks(world)
    assert task[FOLLOW_UPS.follow_up_key_column] == KNOWN and task["statecode"] == 0
    assert task["_ownerid_value"] == OWNER  # the customer's owner
    assert task["_regardingobjectid_value"] == ACCOUNT
    assert task["scheduledend"] == "2026-11-25T10:00:00Z"  # due 24 hours after the call
    assert "m1:e-aino" in task["description"]
    # the "Missed calls" view shows it
    view = next(r for r in world.dataverse.rows("savedqueries") if r["name"] == "Missed calls")
    shown = env["client"].request("GET", f"phonecalls?savedQuery={view['savedqueryid']}").json()["value"]
    assert [r["activityid"] for r in shown] == [call["activityid"]]


def test_three_misses_give_one_follow_up_across_runs_and_an_answered_call_completes_it(env):
    world = env["world"]
    world.enreach.load({"calls": [_call("m1", missed=True), _call("m2", minute=5, missed=True)]})
    _run(env)
    world.enreach.load({"calls": [_call("m3", minute=110, missed=True)]})
    report = _run(env, NOW + timedelta(minutes=30))
    assert report.follow_ups_added == 1 and report.follow_ups_opened == 0
    [task] = _tasks(world)
    assert task["subject"] == "Call back Rautakauppa Oy (3 missed calls)"
    assert sum("Missed call" in line for line in task["description"].splitlines()) == 3
    # a replayed window (checkpoint lost) changes nothing
    env["store"].write("phone_calls", "2026-11-24T09:00:00Z", expected=env["store"].read("phone_calls"))
    _run(env, NOW + timedelta(minutes=40))
    [task] = _tasks(world)
    assert sum("Missed call" in line for line in task["description"].splitlines()) == 3
    # Aino calls back: the follow-up is completed, and says so
    world.enreach.load({"calls": [_call("back", minute=150, outgoing=True)]})
    report = _run(env, NOW + timedelta(hours=1))
    assert report.follow_ups_completed == 1
    [task] = _tasks(world)
    assert (task["statecode"], task["statuscode"], task[FOLLOW_UPS.follow_up_key_column]) == (1, 5, None)
    assert "Completed: callback back:e-aino" in task["description"]
    assert "Completes the follow-up of Rautakauppa Oy (3 missed calls)" in _calls(world)["back:e-aino"]["description"]
    # the next miss opens a new one
    world.enreach.load({"calls": [_call("m4", minute=170, missed=True)]})
    _run(env, NOW + timedelta(hours=2))
    assert sorted(t["statecode"] for t in _tasks(world)) == [0, 1]


def test_a_missed_queue_call_goes_to_the_mapped_queue(env):
    world = env["world"]
    start = NOW - timedelta(hours=1)
    world.enreach.load(
        {
            "service_calls": [
                {
                    "CallId": "q1",
                    "ANum": LIISA,
                    "StartTime": start.strftime("%Y-%m-%d %H:%M:%S"),
                    "QueueId": QUEUE_E,
                    "QueueName": "Support",
                    "EndResult": 3,
                },
                {  # answered: in the answering user's records, not a missed call
                    "CallId": "q2",
                    "ANum": KNOWN,
                    "StartTime": start.strftime("%Y-%m-%d %H:%M:%S"),
                    "QueueId": QUEUE_E,
                    "EndResult": 0,
                },
            ]
        }
    )
    report = _run(env)
    assert report.missed == 1 and report.follow_ups_opened == 1, report.summary()
    calls = _calls(world)
    assert list(calls) == ["q1:queue"] and calls["q1:queue"]["subject"] == "Missed call from Liisa"
    [task] = _tasks(world)
    assert task["_regardingobjectid_value"] == CONTACT
    [item] = world.dataverse.rows("queueitems")
    assert (item["_queueid_value"], item["_objectid_value"]) == (QUEUE_D, task["activityid"])


def test_an_unknown_number_appears_on_the_view(env):
    world = env["world"]
    world.enreach.load({"calls": [_call("u1", number=STRANGER), _call("k1", minute=5)]})
    report = _run(env)
    assert report.unknown_callers == 1 and report.leads_created == 0
    view = next(r for r in world.dataverse.rows("savedqueries") if r["name"] == "Calls from unknown numbers")
    shown = env["client"].request("GET", f"phonecalls?savedQuery={view['savedqueryid']}").json()["value"]
    assert [r[FOLLOW_UPS.unknown_column] for r in shown] == [STRANGER]
    assert world.dataverse.rows("leads") == []  # the lead option is off by default


def test_the_lead_option_makes_one_lead_per_number_across_concurrent_runs_never_for_a_blocked_number(env):
    world = env["world"]
    world.enreach.load(
        {
            "calls": [
                *(_call(f"s{i}", minute=i, number=STRANGER) for i in range(4)),
                _call("sw", minute=9, number=SWITCHBOARD),
            ]
        }
    )
    barrier = threading.Barrier(2)
    reports = []

    def run() -> None:
        barrier.wait()
        reports.append(_run(env, unknown_caller_leads=True))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    leads = world.dataverse.rows("leads")
    assert [lead[FOLLOW_UPS.lead_number_column] for lead in leads] == [STRANGER]
    assert sum(r.leads_created for r in reports) == 1
    calls = _calls(world)
    assert len(calls) == 5
    assert {calls[f"s{i}:e-aino"]["_regardingobjectid_value"] for i in range(4)} == {leads[0]["leadid"]}
    assert calls["sw:e-aino"].get("_regardingobjectid_value") is None  # blocked: no lead
    assert calls["sw:e-aino"][FOLLOW_UPS.unknown_column] == SWITCHBOARD  # but still on the view


def test_one_open_case_makes_the_call_regarding_it_two_leave_it_on_the_person(env):
    world = env["world"]
    world.dataverse.load(
        {"incidents": [{"incidentid": CASE_1, "title": "Broken drill", "_customerid_value": ACCOUNT, "statecode": 0}]}
    )
    world.enreach.load({"calls": [_call("c1")]})
    report = _run(env)
    call = _calls(world)["c1:e-aino"]
    assert call["_regardingobjectid_value"] == CASE_1 and report.regarding_case == 1
    assert "Regarding case Broken drill: the only open case of account Rautakauppa Oy." in call["description"]
    assert _parties_of(world, call["activityid"]) >= {ACCOUNT}  # the customer stays a party
    world.dataverse.load(
        {"incidents": [{"incidentid": CASE_2, "title": "Invoice", "_customerid_value": ACCOUNT, "statecode": 0}]}
    )
    world.enreach.load({"calls": [_call("c2", minute=110)]})
    _run(env, NOW + timedelta(minutes=40))
    call = _calls(world)["c2:e-aino"]
    assert call["_regardingobjectid_value"] == ACCOUNT
    assert "2 open cases, so none was chosen" in call["description"]
    # the case lookup rides in the customer matching's one query: no request to incidents
    assert not [r for r in world.dataverse.requests if "/incidents" in r["path"]]


def _parties_of(world, activity):
    return {p["_partyid_value"] for p in world.dataverse.rows("activityparties") if p["_activityid_value"] == activity}


def test_a_pending_then_completed_transcript_is_attached_once(env):
    world = env["world"]
    world.enreach.load({"calls": [_call("t1", transcript="tr-1")]})
    world.enreach.set_transcript("tr-1", "Pending")
    report = _run(env, transcripts=True)
    assert report.transcripts_pending == 1 and world.dataverse.rows("annotations") == []
    text = "Asiakas kysyi porasta. " * 6000  # 138,000 characters: whole, as a file on the note
    world.enreach.set_transcript("tr-1", "Completed", text)
    report = _run(env, NOW + timedelta(minutes=10), transcripts=True)
    assert report.transcripts_attached == 1 and report.transcripts_pending == 0
    _run(env, NOW + timedelta(minutes=20), transcripts=True)
    [note] = world.dataverse.rows("annotations")
    assert note["annotationid"] == note_id("t1:e-aino")
    assert note["_objectid_value"] == _calls(world)["t1:e-aino"]["activityid"]
    import base64

    assert base64.b64decode(note["documentbody"]).decode("utf-8") == text  # kept whole
    assert note["subject"].startswith("Transcript: Asiakas kysyi porasta.") and len(note["subject"]) < 100
    assert env["pending"].all() == []


def test_a_pending_transcript_is_given_up_after_the_window(env):
    world = env["world"]
    world.enreach.load({"calls": [_call("t2", transcript="tr-2")]})
    world.enreach.set_transcript("tr-2", "Pending")
    _run(env, transcripts=True)
    report = _run(env, NOW + timedelta(hours=25), transcripts=True)
    assert report.transcripts_given_up == 1 and env["pending"].all() == []
    assert world.dataverse.rows("annotations") == []


def test_private_reclassification_removes_the_transcript_note(env):
    world = env["world"]
    world.enreach.load({"calls": [_call("p1", transcript="tr-3")]})
    world.enreach.set_transcript("tr-3", "Completed", "Short talk")
    report = _run(env, transcripts=True)
    assert report.transcripts_attached == 1 and len(world.dataverse.rows("annotations")) == 1
    assert world.dataverse.rows("annotations")[0]["notetext"] == "Short talk"
    world.enreach.reset()
    world.enreach.load(enreach_users((E_AINO, AINO_LOGIN, "+358401110001")))
    world.enreach.load(
        {"calls": [_call("p1", transcript="tr-3", Classification="Private", **{"$modified": "2026-11-24 12:05:00"})]}
    )
    world.enreach.set_transcript("tr-3", "Completed", "Short talk")
    report = _run(env, NOW + timedelta(minutes=10), transcripts=True)
    assert report.private_removed == 1
    assert _calls(world) == {} and world.dataverse.rows("annotations") == []


def test_queue_calls_unreadable_hold_the_checkpoint_and_are_written_next_run(env):
    from emulators._server import FaultRule

    world = env["world"]
    start = (NOW - timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
    world.enreach.load(
        {
            "calls": [_call("u1", minute=100)],
            "service_calls": [{"CallId": "q7", "ANum": LIISA, "StartTime": start, "QueueId": QUEUE_E, "EndResult": 2}],
        }
    )
    world.enreach.inject(FaultRule(status=503, count=100, path="servicecall"))
    report = _run(env)
    assert "queue calls (GET servicecall)" in " ".join(report.problems)
    assert list(_calls(world)) == ["u1:e-aino"]  # the user calls went on
    held = env["store"].read("phone_calls").value  # held before the window: its queue calls are still to be read
    assert held is not None and held < "2026-11-24T11:30:00Z"
    world.enreach.clear_faults()
    _run(env, NOW + timedelta(minutes=5))
    assert sorted(_calls(world)) == ["q7:queue", "u1:e-aino"]
