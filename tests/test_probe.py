"""``python -m ops probe-enreach`` against emulated tenants: a healthy one, one whose call records
lack the number fields, one where every call is unclassified, and one whose users carry no e-mail."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ops.probe import probe_enreach
from tests.helpers import enreach_call, enreach_users

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
E1, E2 = "e1a0c001-0000-4000-8000-000000000001", "e1a0c001-0000-4000-8000-000000000002"
ROOT = Path(__file__).resolve().parent.parent


def _tenant(world, *, calls=None):
    world.enreach.load(
        {
            **enreach_users((E1, "aino@example.fi", "+358401110001"), (E2, "mikko@example.fi", None)),
            "calls": calls
            if calls is not None
            else [
                enreach_call(f"c{i}", "aino@example.fi", NOW - timedelta(hours=i + 1), seconds=60 + i) for i in range(5)
            ],
            "availabilities": [{"UserID": E2, "EventTypeID": 3}, {"UserID": E1, "EventTypeID": 9}],
        }
    )


def _probe(client):
    lines: list[str] = []
    return probe_enreach(client, days=3, now=NOW, out=lines.append), "\n".join(lines)


def test_a_healthy_tenant(enreach_client, world):
    _tenant(world)
    result, text = _probe(enreach_client)
    assert result.ok, text
    assert "calls.a_number" in text and "5 of 5" in text  # ANum on every incoming call
    assert "3 x1 (DND)" in text and "9 x1 (not mapped)" in text  # EventTypeIDs seen, by mapping
    assert "-> kept" in text and "+3585******67" in text and "+358501234567" not in text  # masked
    assert "aino@example.fi" not in text  # counts and field names only
    assert text.splitlines()[-1].startswith("probe: ok")


def test_a_tenant_without_the_number_fields(enreach_client, world):
    calls = [enreach_call(f"c{i}", "aino@example.fi", NOW - timedelta(hours=i + 1)) for i in range(4)]
    for call in calls:
        call.pop("ANum"), call.pop("BNum")
    _tenant(world, calls=calls)
    result, text = _probe(enreach_client)
    assert not result.ok
    assert "0 of 4 calls carry a number field: set ENREACH_FIELD_MAP.calls.other_number" in result.problems
    assert "no customer can be matched" in text


def test_a_tenant_where_every_call_is_unclassified(enreach_client, world):
    calls = [
        enreach_call(f"c{i}", "aino@example.fi", NOW - timedelta(hours=i + 1), classification=None) for i in range(3)
    ]
    _tenant(world, calls=calls)
    result, text = _probe(enreach_client)
    assert not result.ok
    assert any("0 of 3 calls are classified Work" in p and "calls.classification" in p for p in result.problems)
    assert "skipped: Unclassified" in text


def test_users_without_any_email(enreach_client, world):
    world.enreach.load({"users": [{"Id": E1}], "directory": [{"Id": E1}]})
    result, _ = _probe(enreach_client)
    assert any("ENREACH_FIELD_MAP.users.email" in p for p in result.problems)


def test_the_command_exits_1_with_a_one_line_verdict(world, tmp_path):
    calls = [enreach_call("c1", "aino@example.fi", datetime.now(UTC) - timedelta(hours=1), classification=None)]
    _tenant(world, calls=calls)
    settings = world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"})
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": settings}))
    done = subprocess.run(
        [sys.executable, "-m", "ops", "--settings", str(path), "probe-enreach", "--days", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "REQUESTS_CA_BUNDLE": settings["REQUESTS_CA_BUNDLE"]},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("probe: PROBLEM: 0 of 1 calls are classified Work"), done.stdout
    assert "Traceback" not in done.stderr


def test_the_notification_names_are_reported_as_unverified(enreach_client, world):
    _tenant(world)
    _, text = _probe(enreach_client)
    assert "notifications (UNVERIFIED" in text
    assert "events.user_id" in text and "UserId, UserID, userId, EntityId" in text
    assert "events.payload" in text and "no call end mapped" in text


def test_a_tenant_with_callback_lists_gets_their_field_coverage(enreach_client, world):
    _tenant(world)
    modified = (NOW - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    world.enreach.load(
        {
            "callbacklists": [{"ListId": "l1", "ListName": "Sales callbacks"}, {"ListId": "l2", "ListName": "Support"}],
            "callbacks": [
                {
                    "CallbackListItemId": f"r{i}",
                    "CallbackListId": "l1",
                    "ContactNumber": "+358501234567",
                    "Note": "call me",
                    "LastModified": modified,
                    "CallbackAttempts": i,
                }
                for i in range(3)
            ],
        }
    )
    result, text = _probe(enreach_client)
    assert result.ok, text
    assert "callback lists: 2 from GET callbacklists" in text
    assert "callback requests: 3 modified in the last 3 days" in text
    lines = {line.split()[2]: line for line in text.splitlines() if line.strip().startswith("callback request ")}
    assert "3 of 3" in lines["callbacks.number"] and "via ContactNumber" in lines["callbacks.number"]
    assert "0 of 3" in lines["callbacks.due"]  # an UNVERIFIED name this tenant does not carry shows as such
    assert "2 callback lists, 3 recent callback requests" in text.splitlines()[-1]
    assert "+358501234567" not in text


def test_a_tenant_without_callback_lists_is_a_note_not_a_problem(enreach_client, world):
    _tenant(world)
    result, text = _probe(enreach_client)
    assert result.ok, text
    assert "callback lists: GET callbacklists answered 404" in text
    assert "no callback lists" in text.splitlines()[-1] and "ENREACH_FIELD_MAP.callbacks.lists_path" in text


def test_callback_requests_without_the_mapped_number_are_a_problem(enreach_client, world):
    _tenant(world)
    modified = (NOW - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    world.enreach.load(
        {
            "callbacklists": [{"ListId": "l1", "ListName": "Sales callbacks"}],
            "callbacks": [{"CallbackListItemId": "r1", "CallbackListId": "l1", "LastModified": modified}],
        }
    )
    result, _ = _probe(enreach_client)
    assert "0 of 1 callback requests carry a number field: set ENREACH_FIELD_MAP.callbacks.number" in result.problems


def test_queue_calls_and_transcripts_are_reported_with_their_unverified_names(enreach_client, world):
    calls = [enreach_call(f"c{i}", "aino@example.fi", NOW - timedelta(hours=i + 1)) for i in range(3)]
    calls[0]["TranscriptId"] = "tr-1"
    _tenant(world, calls=calls)
    world.enreach.set_transcript("tr-1", "Pending")
    start = (NOW - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    world.enreach.load(
        {"service_calls": [{"CallId": "q1", "ANum": "+358501234567", "StartTime": start, "QueueId": "q-9"}]}
    )
    result, text = _probe(enreach_client)
    assert result.ok, text
    assert "queue calls: 1 records" in text and "UNVERIFIED" in text
    assert "service_calls.queue_id" in text and "via QueueId" in text
    assert "service_calls.answered_by" in text  # looked for, none carried it
    assert "calls.transcript_id" in text and "transcripts: 1 calls name one" in text and "'Pending'" in text
    assert "+358501234567" not in text


def test_a_servicecall_record_without_a_call_id_is_a_problem(enreach_client, world):
    _tenant(world)
    start = (NOW - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    world.enreach.load({"service_calls": [{"Id": "q1", "StartTime": start}]})
    result, _ = _probe(enreach_client)
    assert "0 of 1 queue calls carry a call id: set ENREACH_FIELD_MAP.service_calls.call_id" in result.problems
