"""How the call sync asks Enreach for calls (call_sync/query.py): the two query modes, and per-user
queries paced within CALL_SYNC_ENREACH_REQUEST_BUDGET, over HTTP against both emulators and Azurite.

The budget tests are the issue's "nothing lost": a budget that runs out mid-run leaves the rest of
the users for the next run, the checkpoint stays behind them, and every call lands exactly once."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from bridge.settings import load_settings
from call_sync.calls import CHECKPOINT_NAME, sync_phone_calls
from call_sync.parking import ParkedCalls
from call_sync.query import SWEEP_NAME
from call_sync.runtime import lookup_for
from call_sync.runtime import options as options_for
from core.schema import CALL_SYNC
from core.state import CheckpointStore
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_call, enreach_client_for, enreach_users

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ASSIGNEE = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a09"
USERS = [(f"e0000000-0000-4000-8000-{i:012d}", f"agent{i:02d}@example.fi", None) for i in range(12)]


def _calls_of(users, *, start: datetime, tag: str) -> list[dict]:
    return [
        enreach_call(f"{tag}-{index}", name, start + timedelta(minutes=index), seconds=60, number="+358501234567")
        for index, (_, name, _) in enumerate(users)
    ]


@pytest.fixture
def env(world, azurite):
    world.dataverse.load(
        {"systemusers": [{"systemuserid": ASSIGNEE, "fullname": "Call Desk", "internalemailaddress": "d@example.fi"}]}
    )
    provision_app_schema(world.dataverse)
    world.enreach.load(enreach_users(*USERS))
    settings = load_settings(
        world.app_settings(
            {
                "ROUTING_API_KEY": "test-routing-key-0123456789",
                "AzureWebJobsStorage": azurite.connection_string,
                "DEFAULT_CRM_ASSIGNEE": ASSIGNEE,  # every call has an owner: the counts are the calls
            }
        )
    )
    return {
        "settings": settings,
        "client": dataverse_client_for(settings),
        "store": CheckpointStore(settings.storage_connection_string, table_name=f"c{uuid.uuid4().hex[:12]}"),
        "parking": ParkedCalls(settings.storage_connection_string, table_name=f"p{uuid.uuid4().hex[:12]}"),
    }


def _run(env, world, now, *, budget=0, field_map=None):
    settings = env["settings"]
    if field_map is not None:
        settings = load_settings({**world.app_settings(), **_env_of(env), "ENREACH_FIELD_MAP": json.dumps(field_map)})
    options = replace(options_for(settings), enreach_request_budget=budget)
    enreach = enreach_client_for(settings)
    return sync_phone_calls(
        enreach,
        env["client"],
        env["store"],
        lookup_for(settings, env["client"]),
        options,
        parking=env["parking"],
        now=now,
    )


def _env_of(env):
    settings = env["settings"]
    return {
        "ROUTING_API_KEY": "test-routing-key-0123456789",
        "AzureWebJobsStorage": settings.storage_connection_string,
        "DEFAULT_CRM_ASSIGNEE": ASSIGNEE,
    }


def _synced(world) -> Counter[str]:
    return Counter(str(r[CALL_SYNC.call_id_column]).split(":")[0] for r in world.dataverse.rows("phonecalls"))


def _asked(world) -> list[str | None]:
    return [dict(parse_qsl(r["query"])).get("UserIDs") for r in world.enreach.requests if r["path"] == "/calls"]


def test_a_budget_that_runs_out_mid_run_leaves_the_rest_for_the_next_run_and_nothing_is_lost(env, world):
    world.enreach.load({"calls": _calls_of(USERS, start=NOW - timedelta(hours=2), tag="early")})
    # 13 users (12 and the API user); discovery, GET users and the directory take 4 requests, each user 1
    first = _run(env, world, NOW, budget=10)
    assert first.enreach_requests == 10 and first.users_left == 7
    assert world.enreach.request_count("/calls") == 6
    assert env["store"].read(CHECKPOINT_NAME).value is None  # behind the users not read yet
    assert sum(_synced(world).values()) == first.created > 0
    sweep = json.loads(env["store"].read(SWEEP_NAME).value)
    assert sweep["until"] == "2026-11-24T12:00:00Z"

    # a call of a user read already, made after the pinned window: the sweep after next reads it
    late = enreach_call("late-0", USERS[0][1], NOW + timedelta(minutes=2), seconds=30)
    world.enreach.load({"calls": [late]})
    asked_first = _asked(world)
    world.enreach.reset_requests()
    second = _run(env, world, NOW + timedelta(minutes=5), budget=20)
    assert second.users_left == 0 and second.window == ("2026-11-23T12:00:00Z", "2026-11-24T12:00:00Z")
    asked_second = _asked(world)  # only the users the first run left, each once
    assert len(asked_second) == 7 and not set(asked_first) & set(asked_second)
    assert {u[0] for u in USERS} <= set(asked_first) | set(asked_second)
    assert env["store"].read(CHECKPOINT_NAME).value == "2026-11-24T12:00:00Z"  # the pinned window's end
    assert _synced(world) == Counter({f"early-{i}": 1 for i in range(12)})  # each call exactly once

    third = _run(env, world, NOW + timedelta(minutes=10), budget=0)
    assert third.users_left == 0 and third.created == 1
    assert _synced(world) == Counter({**{f"early-{i}": 1 for i in range(12)}, "late-0": 1})


def test_a_user_added_to_the_part_already_read_restarts_the_sweep_over_the_same_window(env, world):
    world.enreach.load({"calls": _calls_of(USERS, start=NOW - timedelta(hours=2), tag="c")})
    _run(env, world, NOW, budget=10)
    newcomer = ("e0000000-0000-4000-8000-000000000000a", "newcomer@example.fi", None)  # sorts among the read
    world.enreach.load(
        {
            **enreach_users(newcomer),
            "calls": [enreach_call("new-1", newcomer[1], NOW - timedelta(hours=1), seconds=40)],
        }
    )
    for minute in (5, 10, 15):
        report = _run(env, world, NOW + timedelta(minutes=minute), budget=10)
        if report.users_left == 0:
            break
    assert report.users_left == 0
    assert _synced(world) == Counter({**{f"c-{i}": 1 for i in range(12)}, "new-1": 1})
    assert env["store"].read(CHECKPOINT_NAME).value == "2026-11-24T12:00:00Z"


def test_enreach_throttled_mid_sweep_is_a_budget_spent_not_a_failed_run(env, world):
    world.enreach.load({"calls": _calls_of(USERS, start=NOW - timedelta(hours=2), tag="t")})
    # after 4 users, Enreach answers 429 to every calls request (longer than the retry policy waits)
    world.enreach.configure(rate_limit=7, rate_window=3600, rate_retry_after=3600)
    first = _run(env, world, NOW, budget=0)
    assert first.users_left > 0 and env["store"].read(CHECKPOINT_NAME).value is None
    world.enreach.configure(rate_limit=0)
    second = _run(env, world, NOW + timedelta(minutes=5), budget=0)
    assert second.users_left == 0
    assert _synced(world) == Counter({f"t-{i}": 1 for i in range(12)})


def test_all_mode_reads_the_organisation_in_one_request(env, world):
    world.enreach.configure(calls_without_user="all")
    world.enreach.load({"calls": _calls_of(USERS, start=NOW - timedelta(hours=2), tag="o")})
    report = _run(env, world, NOW, field_map={"calls": {"query_mode": "all"}})
    assert _asked(world) == [None]  # one GET calls, no UserIDs
    assert report.enreach_requests == 5  # discovery, users, directory (2), calls
    assert _synced(world) == Counter({f"o-{i}": 1 for i in range(12)})
    # the same keys as per user: a per-user run over the same window (a fresh checkpoint) finds them synced
    env["store"] = CheckpointStore(env["settings"].storage_connection_string, table_name=f"c{uuid.uuid4().hex[:12]}")
    per_user = _run(env, world, NOW + timedelta(minutes=1), budget=0)
    assert per_user.created == 0 and per_user.already_synced == 12


def test_all_mode_against_a_tenant_that_answers_only_the_api_users_own_calls(env, world):
    world.enreach.load({"calls": _calls_of(USERS, start=NOW - timedelta(hours=2), tag="x")})
    report = _run(env, world, NOW, field_map={"calls": {"query_mode": "all"}})
    assert report.created == 0  # the emulator's default: without UserIDs, the caller's own calls


def test_the_budget_setting(world):
    from bridge.settings import SettingsError

    base = world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"})
    assert load_settings(base).call_sync.enreach_request_budget == 1000
    assert load_settings({**base, "CALL_SYNC_ENREACH_REQUEST_BUDGET": "0"}).call_sync.enreach_request_budget == 0
    for bad in ("5", "-1", "lots"):
        with pytest.raises(SettingsError, match="CALL_SYNC_ENREACH_REQUEST_BUDGET"):
            load_settings({**base, "CALL_SYNC_ENREACH_REQUEST_BUDGET": bad})


def test_query_mode_is_checked_at_start(world):
    from bridge.settings import SettingsError

    base = world.app_settings({"ROUTING_API_KEY": "test-routing-key-0123456789"})
    with pytest.raises(SettingsError, match=r"calls\.query_mode"):
        load_settings({**base, "ENREACH_FIELD_MAP": json.dumps({"calls": {"query_mode": "everyone"}})})
