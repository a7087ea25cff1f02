"""Dataverse rows as a configuration source (issue 19): routing rules and business options edited
in the Enreach Bridge app apply without a restart, over HTTP through the local Functions host against
the emulators and Azurite; a bad row gets its enr_error once and the others apply."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from bridge.rows import read_config_rows
from bridge.settings import load_settings
from core.rows import RowSource
from core.schema import BRIDGE_SETTING, ROUTING_RULE
from routing.runtime import build_router, follow_rule_rows
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_call, enreach_users, serving_app
from tests.test_presence import app  # noqa: F401  (the presence tests' app, a fixture)

KEY = "test-routing-key-0123456789"
OWNER = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01"
DESK = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a09"
CALLER, POOL = "+358501234567", "+358942420000"
OWNER_NUMBER, VIP, EVENING, DESK_NUMBER = "+358942421001", "+358942420001", "+358942420199", "+358942421009"
DEFAULT = ROUTING_RULE.column("enr_kind").option_value("default")
FIELD = ROUTING_RULE.column("enr_kind").option_value("field")


@pytest.fixture()
def env(world, azurite):
    world.dataverse.load(
        {
            "systemusers": [
                {"systemuserid": OWNER, "fullname": "Aino", "address1_telephone1": OWNER_NUMBER},
                {"systemuserid": DESK, "fullname": "Call Desk", "address1_telephone1": DESK_NUMBER},
            ],
            "accounts": [
                {"name": "Rautakauppa Oy", "telephone1": CALLER, "accountcategorycode": 1, "_ownerid_value": OWNER}
            ],
        }
    )
    provision_app_schema(world.dataverse)
    return world.app_settings(
        {
            "ROUTING_API_KEY": KEY,
            "AzureWebJobsStorage": azurite.connection_string,
            "BRIDGE_CONFIG_REFRESH_SECONDS": "0.3",
        }
    )


def _route(host) -> str | None:
    response = requests.post(
        f"{host.url}/api/routing",
        json={"anum": CALLER, "bnum": POOL},
        headers={"X-Benemen-APIKey": KEY},
        timeout=30,
    )
    assert response.status_code in (200, 204), response.text
    return response.json()["InitialTarget"] if response.status_code == 200 else None


def _until(host, expected, *, limit=15.0) -> list[str | None]:
    """Route calls until the answer is ``expected`` (the refresh runs in the background)."""
    seen, stop = [], time.monotonic() + limit
    while time.monotonic() < stop:
        seen.append(_route(host))
        if seen[-1] == expected:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the answer never became {expected}: {seen[-5:]}")


def _rule(world, name, order, **columns):
    world.dataverse.load({ROUTING_RULE.entity_set: [{"enr_name": name, "enr_order": order, **columns}]})
    return next(r for r in world.dataverse.rows(ROUTING_RULE.entity_set) if r["enr_name"] == name)


def test_rule_rows_created_changed_and_deactivated_change_the_answer_without_a_restart(world, env, monkeypatch):
    with serving_app(monkeypatch, env) as host:
        assert _route(host) == OWNER_NUMBER  # no rows: the app setting's default (owner routing)
        row = _rule(
            world,
            "vip",
            10,
            enr_kind=FIELD,
            enr_table="account",
            enr_column="accountcategorycode",
            enr_equals="1",
            enr_target=VIP,
        )
        _until(host, VIP)  # created
        world.dataverse.touch(ROUTING_RULE.entity_set, row["enr_routingruleid"], enr_target=EVENING)
        _until(host, EVENING)  # changed
        world.dataverse.touch(ROUTING_RULE.entity_set, row["enr_routingruleid"], statecode=1, statuscode=2)
        _until(host, OWNER_NUMBER)  # deactivated: no active row, the app setting applies again
        # a fixed target user: the lookup on the row, answered with the user's direct number
        _rule(
            world,
            "desk",
            5,
            enr_kind=DEFAULT,
            **{"_enr_targetuser_value": DESK, "_enr_targetuser_value@lookuplogicalname": "systemuser"},
        )
        _until(host, DESK_NUMBER)


def test_a_malformed_row_gets_its_error_once_and_the_other_rules_still_apply(world, env, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "bridge.events")
    with serving_app(monkeypatch, env) as host:
        _rule(world, "broken", 1, enr_kind=DEFAULT, enr_target="not a number")
        _rule(world, "hours", 2, enr_kind=DEFAULT, enr_target=EVENING, enr_hours="{not json")
        _rule(
            world,
            "vip",
            3,
            enr_kind=FIELD,
            enr_table="account",
            enr_column="accountcategorycode",
            enr_equals="1",
            enr_target=VIP,
        )
        _until(host, VIP)
        for _ in range(8):  # more refreshes: the error is not written again
            _route(host)
            time.sleep(0.1)
    rows = {r["enr_name"]: r for r in world.dataverse.rows(ROUTING_RULE.entity_set)}
    assert "'target' must be an E.164 number" in rows["broken"]["enr_error"]
    assert "'Weekly hours' is not valid JSON" in rows["hours"]["enr_error"]
    assert rows["vip"].get("enr_error") is None
    writes = [r for r in world.dataverse.requests if r["method"] == "PATCH" and ROUTING_RULE.entity_set in r["path"]]
    assert len(writes) == 2, writes  # once per bad row
    refused = [r.getMessage() for r in caplog.records if "config_row_refused" in r.getMessage()]
    assert len(refused) == 2, refused  # logged once per bad row
    assert not any(CALLER in line for line in refused)


def test_a_fixed_row_clears_its_error(world, env, monkeypatch):
    with serving_app(monkeypatch, env) as host:
        row = _rule(world, "desk", 1, enr_kind=DEFAULT, enr_target="0942421009")
        _until(host, OWNER_NUMBER)
        deadline = time.monotonic() + 10
        while not world.dataverse.rows(ROUTING_RULE.entity_set)[0].get("enr_error") and time.monotonic() < deadline:
            time.sleep(0.05)
        world.dataverse.touch(ROUTING_RULE.entity_set, row["enr_routingruleid"], enr_target=DESK_NUMBER)
        _until(host, DESK_NUMBER)
        time.sleep(0.5)
        _route(host)
    assert world.dataverse.rows(ROUTING_RULE.entity_set)[0].get("enr_error") is None


def test_no_routing_call_waits_for_a_configuration_read(world, env):
    """The read is held open (a reader that waits on an event around the real HTTP read): calls keep
    being answered with the last good rules, and the new rules apply once the read completes."""
    settings = load_settings(env)
    client = dataverse_client_for(settings)
    release, reads = threading.Event(), []

    def slow_read():
        reads.append(time.monotonic())
        if len(reads) > 1:
            release.wait(30)
        return read_config_rows(client, settings.matching.owner_phone_column)

    source = RowSource(slow_read, interval=0.0)
    router = build_router(settings, client)
    follow_rule_rows(router, settings, client, source)
    source.refresh_now()
    assert router.route(CALLER, POOL).target == OWNER_NUMBER
    _rule(
        world,
        "vip",
        1,
        enr_kind=FIELD,
        enr_table="account",
        enr_column="accountcategorycode",
        enr_equals="1",
        enr_target=VIP,
    )
    source.refresh_in_background()  # starts the held read
    answers = []
    for _ in range(5):
        source.refresh_in_background()  # a call finds a read under way: it neither waits nor starts another
        answers.append(router.route(CALLER, POOL).target)
    assert answers == [OWNER_NUMBER] * 5 and len(reads) == 2
    release.set()
    source.wait(10)
    assert router.route(CALLER, POOL).target == VIP
    client.close()


def test_one_request_reads_every_configuration_row(world, env):
    settings = load_settings(env)
    client = dataverse_client_for(settings)
    _rule(world, "vip", 1, enr_kind=DEFAULT, enr_target=VIP)
    world.dataverse.load({BRIDGE_SETTING.entity_set: [{"enr_name": "CALL_DURATION_LIMIT", "enr_value": "5"}]})
    world.dataverse.reset_requests()
    source = RowSource(lambda: read_config_rows(client, settings.matching.owner_phone_column))
    snapshot = source.refresh_now()
    assert snapshot is not None and [r.name for r in snapshot.rules] == ["vip"]
    assert [r.name for r in snapshot.settings] == ["CALL_DURATION_LIMIT"]
    assert [r["path"].rsplit("/", 1)[-1] for r in world.dataverse.requests] == ["$batch"]
    source.refresh_if_due()  # within the interval: nothing read
    assert len(world.dataverse.requests) == 1
    world.dataverse.tables.pop(ROUTING_RULE.entity_set)  # not provisioned: read as no rows
    assert source.refresh_now().rules == ()
    client.close()


def test_a_default_assignee_picked_on_a_settings_row_owns_the_next_runs_unmapped_calls(world, env, monkeypatch):
    now = datetime.now(UTC).replace(microsecond=0)
    world.enreach.load(
        {
            **enreach_users(("e-ghost", "ghost@example.fi", None)),  # an Enreach user with no Dataverse user
            # modified a minute ago: after the checkpoint an earlier test's run left in the shared Azurite
            # (minus the overlap), before this run's end
            "calls": [
                enreach_call(
                    "c1",
                    "ghost@example.fi",
                    now - timedelta(hours=1),
                    number=CALLER,
                    modified=now - timedelta(minutes=1),
                )
            ],
        }
    )
    world.dataverse.load(
        {
            BRIDGE_SETTING.entity_set: [
                {
                    "enr_name": "DEFAULT_CRM_ASSIGNEE",
                    "_enr_user_value": DESK,
                    "_enr_user_value@lookuplogicalname": "systemuser",
                },
                {"enr_name": "CALL_DURATION_LIMIT", "enr_value": "forever"},  # bad: ignored, error written
                {"enr_name": "DATAVERSE_URL", "enr_value": "https://elsewhere.example"},  # not a business option
            ]
        }
    )
    with serving_app(monkeypatch, env) as host:
        response = requests.post(f"{host.url}/admin/functions/sync_phone_calls", timeout=60)
        assert response.status_code == 202
    calls = world.dataverse.rows("phonecalls")
    assert [c["_ownerid_value"] for c in calls] == [DESK], calls
    rows = {r["enr_name"]: r for r in world.dataverse.rows(BRIDGE_SETTING.entity_set)}
    assert "CALL_DURATION_LIMIT must be a whole number" in rows["CALL_DURATION_LIMIT"]["enr_error"]
    assert "not a business option" in rows["DATAVERSE_URL"]["enr_error"]
    assert rows["DEFAULT_CRM_ASSIGNEE"].get("enr_error") is None
    run = world.dataverse.rows("enr_bridgeruns")[0]
    assert run["enr_job"] == "sync_phone_calls" and run["enr_created"] == 1


def test_the_routing_rules_example_loads_as_rows_and_routes_the_same(world, env):
    """Every kind and condition of the README example survives rule -> row -> rule."""
    from pathlib import Path

    from core.rows import ConfigRow
    from routing.rows import RuleRows, row_from_item
    from routing.rules import parse_rules

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("<!-- routing-rules-example -->")
    text = readme[readme.index("```json", start) + 7 : readme.index("```", readme.index("```json", start) + 7)]
    items = json.loads(text)
    rows = []
    for order, item in enumerate(items, start=1):
        values = {
            **row_from_item(item, order * 10),
            "enr_name": item["name"],
            "statecode": 0,
            "enr_routingruleid": str(uuid.uuid4()),
        }
        rows.append(ConfigRow.from_record(ROUTING_RULE, values))
    rules, problems = RuleRows("address1_telephone1").rules(rows)
    assert problems == [] and rules == parse_rules(text)


def test_an_after_call_presence_row_reaches_the_running_presence_sync(world, app):  # noqa: F811
    """PRESENCE_AFTER_CALL as a row: after the next configuration refresh, a call that ends with nothing
    saved and an unmapped Enreach availability brings the row's presence back (the app setting's
    default would be Available)."""
    from bridge.rows import config_rows
    from tests.test_presence import AWAY, CALL_END, CALL_START, ENREACH_ID, _enreach_post, oc_presence

    world.dataverse.load({BRIDGE_SETTING.entity_set: [{"enr_name": "PRESENCE_AFTER_CALL", "enr_value": "AWAY"}]})
    config_rows().refresh_now()  # what the next refresh (or timer run) does
    world.dataverse.table("msdyn_agentstatuses").rows.clear()
    with world.enreach.lock:
        world.enreach.availabilities.append({"Id": str(uuid.uuid4()), "UserID": ENREACH_ID, "EventTypeID": 99})
    assert _enreach_post(app, CALL_START, "r-1")[0] == 200
    status, answer = _enreach_post(app, CALL_END, "r-1")
    assert status == 200 and "default" in answer["detail"], answer
    assert oc_presence(world) == AWAY
