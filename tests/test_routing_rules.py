"""Routing rules that contact centres configure (issue 14): pools, opening hours, holidays,
available owners, last agent, fail targets, validation and explain. Everything goes through
the webhook's HTTP contract against the Dataverse and Enreach emulators and Azurite; the
hours tests use an injected clock (no sleeping, no wall time)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from bridge.settings import SettingsError, load_settings
from core.schema import CALL_SYNC
from core.state import CheckpointStore
from emulators.dataverse import OMNICHANNEL_PRESENCES
from presence_sync.state import PresenceStore
from routing.http import handle_routing_request
from routing.index_sync import sync_phone_index
from routing.rules import KINDS, parse_rules
from routing.runtime import availability_for, build_router
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for, enreach_client_for, serving_app

KEY = "test-routing-key-0123456789"
POOL = "+358942420000"
SUPPORT = "+358942420100"
QUEUE = "a3c1e2d4-5b6f-4a7b-8c9d-0e1f2a3b4c5d"
U1, U2, U3 = (f"4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a0{i}" for i in (1, 2, 3))
E1, E2 = "e1a0c001-0000-4000-8000-000000000001", "e1a0c001-0000-4000-8000-000000000002"
C1 = "c0000000-0000-4000-8000-000000000001"
A1 = "a0000000-0000-4000-8000-000000000001"
L1 = "1ead0000-0000-4000-8000-000000000001"
CONTACT, ACCOUNT, LEAD = "+358501234567", "+35895551000", "+358401234321"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # Wednesday 12:00 in Helsinki
PRESENCE = {name: pid for name, (pid, _) in OMNICHANNEL_PRESENCES.items()}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _data(now: datetime = NOW) -> dict:
    return {
        "systemusers": [
            {"systemuserid": U1, "fullname": "Aino", "address1_telephone1": "+358 9 4242 1001"},
            {"systemuserid": U2, "fullname": "Mikko", "address1_telephone1": "+358942421002"},
            {"systemuserid": U3, "fullname": "Sanna", "address1_telephone1": "09 4242 1003"},
        ],
        "contacts": [
            {
                "contactid": C1,
                "fullname": "Liisa",
                "mobilephone": "050 1234567",
                "_ownerid_value": U1,
                "new_preferredlanguage": "sv",
            }
        ],
        "accounts": [
            {
                "accountid": A1,
                "name": "Oy",
                "telephone1": "09 5551000",
                "_ownerid_value": U2,
                "accountcategorycode": 1,
            }
        ],
        "leads": [{"leadid": L1, "fullname": "Lead", "mobilephone": "+358401234321", "_ownerid_value": U3}],
        "phonecalls": [
            {  # regarding the contact, Mikko's, 10 days ago
                "activityid": "ca110000-0000-4000-8000-000000000001",
                "subject": "call",
                "statecode": 1,
                "actualend": _iso(now - timedelta(days=10)),
                "_regardingobjectid_value": C1,
                "_regardingobjectid_value@lookuplogicalname": "contact",
                "_ownerid_value": U2,
            },
            {  # regarding the contact, Sanna's, older
                "activityid": "ca110000-0000-4000-8000-000000000002",
                "subject": "older call",
                "statecode": 1,
                "actualend": _iso(now - timedelta(days=20)),
                "_regardingobjectid_value": C1,
                "_regardingobjectid_value@lookuplogicalname": "contact",
                "_ownerid_value": U3,
            },
            {  # still open: not a handled call
                "activityid": "ca110000-0000-4000-8000-000000000003",
                "subject": "open call",
                "statecode": 0,
                "actualend": _iso(now - timedelta(days=1)),
                "_regardingobjectid_value": C1,
                "_regardingobjectid_value@lookuplogicalname": "contact",
                "_ownerid_value": U1,
            },
            {  # involving the account as a party (no regarding), Sanna's, 40 days ago
                "activityid": "ca110000-0000-4000-8000-000000000004",
                "subject": "party call",
                "statecode": 1,
                "actualend": _iso(now - timedelta(days=40)),
                "_ownerid_value": U3,
            },
        ],
        "activityparties": [
            {
                "activitypartyid": "9a000000-0000-4000-8000-000000000001",
                "_activityid_value": "ca110000-0000-4000-8000-000000000004",
                "_activityid_value@lookuplogicalname": "phonecall",
                "_partyid_value": A1,
                "participationtypemask": 1,
            }
        ],
    }


OFFWORK_TYPE_ID = 4


@pytest.fixture()
def env(world, azurite):
    world.dataverse.load(_data())
    provision_app_schema(world.dataverse)
    return world.app_settings(
        {
            "ROUTING_API_KEY": KEY,
            "AzureWebJobsStorage": azurite.connection_string,
            # this tenant's EventTypeID for OffWork (only DND = 3 is public)
            "ENREACH_FIELD_MAP": json.dumps({"availability": {"event_types": {"OffWork": OFFWORK_TYPE_ID}}}),
        }
    )


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def routers(env):
    made = []

    def make(rules, *, clock=None, availability=None, index=True, **settings):
        loaded = load_settings({**env, "ROUTING_RULES": json.dumps(rules), **settings})
        client = dataverse_client_for(loaded)
        if index:
            store = CheckpointStore(loaded.storage_connection_string, table_name=f"i{uuid.uuid4().hex[:12]}")
            sync_phone_index(client, store, phone_columns=loaded.matching.phone_columns, region="FI")
        router = build_router(loaded, client, clock=clock or Clock(), availability=availability)
        made.append(router)
        return router

    yield make
    for router in made:
        router.close()


def _call(router, anum, bnum=POOL, *, extradata=None, explain=False):
    body = {"anum": anum, "bnum": bnum}
    if extradata is not None:
        body["extradata"] = extradata
    result = handle_routing_request(
        method="POST",
        headers={"Content-Type": "application/json", "X-Benemen-APIKey": KEY},
        params={"explain": "true"} if explain else {},
        body=json.dumps(body).encode(),
        router=lambda: router,
        api_key=KEY,
        basic_user=None,
        basic_password=None,
    )
    if explain:
        return json.loads(result.body)
    return json.loads(result.body) if result.status == 200 else None


# -- conditions ----------------------------------------------------------------------------------


def test_a_pool_specific_rule_applies_only_in_its_pool_or_queue(routers):
    router = routers(
        [
            {"name": "support", "kind": "default", "pools": [SUPPORT, QUEUE], "target": "+358942429001"},
            {"name": "owner", "kind": "owner"},
        ]
    )
    assert _call(router, CONTACT, SUPPORT) == {"InitialTarget": "+358942429001"}
    assert _call(router, CONTACT, "09 4242 0100") == {"InitialTarget": "+358942429001"}  # bnum normalised
    assert _call(router, CONTACT, POOL) == {"InitialTarget": "+358942421001"}
    queued = {"CurrQueueId": QUEUE.upper(), "CallId": "x"}
    assert _call(router, CONTACT, POOL, extradata=queued) == {"InitialTarget": "+358942429001"}
    explained = _call(router, CONTACT, POOL, extradata={"CurrQueueId": "other-queue"}, explain=True)
    steps = explained["matches"][0]["rules"]
    assert steps[0]["outcome"] == "skipped" and "condition false: pools" in steps[0]["why"]
    assert steps[1] == {"rule": "owner", "outcome": "fired", "why": "target +358942421001"}


HOURS = {"timezone": "Europe/Helsinki", "weekly": {"mon-fri": ["08:00-16:00"]}, "holidays": ["2026-12-24"]}
OFFICE, EVENING, FALLBACK = "+358942429101", "+358942429102", "+358942429103"


def _hours_router(routers, clock):
    return routers(
        [
            {"name": "office", "kind": "default", "hours": HOURS, "target": OFFICE},
            {"name": "fallback", "kind": "default", "target": FALLBACK},
        ],
        clock=clock,
    )


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # spring: EET (UTC+2) until Sun 2026-03-29 03:00, then EEST (UTC+3); same UTC time, other answer
        (datetime(2026, 3, 27, 5, 30, tzinfo=UTC), FALLBACK),  # Fri 07:30 EET: not yet open
        (datetime(2026, 3, 30, 5, 30, tzinfo=UTC), OFFICE),  # Mon 08:30 EEST: open
        (datetime(2026, 3, 30, 12, 59, tzinfo=UTC), OFFICE),  # Mon 15:59 EEST
        (datetime(2026, 3, 30, 13, 0, tzinfo=UTC), FALLBACK),  # Mon 16:00 EEST: closed
        # autumn: back to EET on Sun 2026-10-25
        (datetime(2026, 10, 23, 13, 30, tzinfo=UTC), FALLBACK),  # Fri 16:30 EEST: closed
        (datetime(2026, 10, 26, 13, 30, tzinfo=UTC), OFFICE),  # Mon 15:30 EET: open
        (datetime(2026, 10, 24, 9, 0, tzinfo=UTC), FALLBACK),  # Saturday
    ],
)
def test_opening_hours_follow_helsinki_local_time_across_dst(routers, moment, expected):
    assert _call(_hours_router(routers, Clock(moment)), CONTACT) == {"InitialTarget": expected}


def test_a_holiday_is_closed_all_day(routers):
    clock = Clock(datetime(2026, 12, 23, 10, 0, tzinfo=UTC))  # Wednesday 12:00
    router = _hours_router(routers, clock)
    assert _call(router, CONTACT) == {"InitialTarget": OFFICE}
    clock.now = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)  # Thursday 12:00, a holiday
    explained = _call(router, CONTACT, explain=True)
    assert explained["answer"] == {"InitialTarget": FALLBACK}
    why = explained["matches"][0]["rules"][0]["why"]
    assert why == "condition false: hours (closed at Thu 2026-12-24 12:00 Europe/Helsinki (a holiday))"


def test_outside_hours_applies_only_while_closed(routers):
    clock = Clock(datetime(2026, 11, 25, 16, 0, tzinfo=UTC))  # Wednesday 18:00
    router = routers(
        [
            {"name": "evening", "kind": "default", "outside_hours": HOURS, "target": EVENING},
            {"name": "owner", "kind": "owner"},
        ],
        clock=clock,
    )
    assert _call(router, CONTACT) == {"InitialTarget": EVENING}
    clock.now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # 12:00
    assert _call(router, CONTACT) == {"InitialTarget": "+358942421001"}
    clock.now = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)  # a holiday at noon
    assert _call(router, CONTACT) == {"InitialTarget": EVENING}


def test_caller_tables_limit_a_rule_to_kinds_of_record(routers):
    router = routers(
        [
            {"name": "leads", "kind": "default", "caller_tables": ["lead"], "target": "+358942429201"},
            {"name": "owner", "kind": "owner"},
        ]
    )
    assert _call(router, LEAD) == {"InitialTarget": "+358942429201"}
    explained = _call(router, CONTACT, explain=True)
    assert explained["answer"] == {"InitialTarget": "+358942421001"}, explained
    assert explained["matches"][0]["rules"][0]["why"] == "condition false: caller_tables (the record is a contact)"


# -- available owners --------------------------------------------------------------------------------


@pytest.fixture()
def availability(world, env):
    world.dataverse.touch("systemusers", U1, **{CALL_SYNC.user_id_column: E1})
    world.dataverse.touch("systemusers", U2, **{CALL_SYNC.user_id_column: E2})
    world.enreach.load(
        {
            "users": [
                {"Id": E1, "UserName": "aino@example.fi"},
                {"Id": E2, "UserName": "mikko@example.fi"},
            ]
        }
    )
    settings = load_settings(env)
    store = PresenceStore(settings.storage_connection_string, table_name=f"p{uuid.uuid4().hex[:12]}")
    enreach = enreach_client_for(settings)
    source = availability_for(settings, dataverse_client_for(settings), enreach=enreach, store=store)
    yield source, store
    source.close()
    enreach.close()


AVAILABLE_OWNER = [
    {"name": "owner", "kind": "owner", "require_available": True},
    {"name": "fallback", "kind": "default", "target": FALLBACK},
]


def test_an_available_owner_gets_the_call(routers, availability, world):
    source, _ = availability
    world.dataverse.set_presence(U1, PRESENCE["Available"])
    explained = _call(routers(AVAILABLE_OWNER, availability=source), CONTACT, explain=True)
    assert explained["answer"] == {"InitialTarget": "+358942421001"}
    assert explained["matches"][0]["rules"][0]["why"] == (
        "target +358942421001 (owner available: Enreach availability is Available)"
    )
    assert world.enreach.request_count(f"users/{E1}/availability") == 1


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        ("enreach_dnd", "owner unavailable: Enreach availability is DND"),
        ("enreach_offwork", "owner unavailable: Enreach availability is OffWork"),
        ("omnichannel_offline", "owner unavailable: Omnichannel presence is Offline"),
        ("omnichannel_dnd", "owner unavailable: Omnichannel presence is Busy - DND"),
        ("in_a_call", "owner unavailable: in a call (the presence sync set DND)"),
        ("no_enreach_id", "owner availability unknown: the user has no Enreach user id"),
    ],
)
def test_an_unavailable_owner_falls_through_to_the_next_rule(routers, availability, world, setup, why):
    source, store = availability
    if setup == "enreach_dnd":
        world.enreach.set_availability(E1, 3)
    elif setup == "enreach_offwork":
        world.enreach.set_availability(E1, OFFWORK_TYPE_ID)
    elif setup == "omnichannel_offline":
        world.dataverse.set_presence(U1, PRESENCE["Offline"])
    elif setup == "omnichannel_dnd":
        world.dataverse.set_presence(U1, PRESENCE["Busy - DND"])
    elif setup == "in_a_call":
        store.update(U1, lambda state: state.active_calls.update({"call-1": time.time()}))
    else:
        world.dataverse.touch("systemusers", U1, **{CALL_SYNC.user_id_column: None})
    explained = _call(routers(AVAILABLE_OWNER, availability=source), CONTACT, explain=True)
    assert explained["answer"] == {"InitialTarget": FALLBACK}
    steps = explained["matches"][0]["rules"]
    assert steps[0]["outcome"] == "skipped" and steps[0]["why"].startswith(why)
    assert steps[1] == {"rule": "fallback", "outcome": "fired", "why": f"target {FALLBACK}"}


def test_unavailable_owner_falls_through_over_http_in_the_app(world, env, monkeypatch):
    """The deployed shape: the app's own runtime builds the availability source from the settings."""
    world.dataverse.touch("systemusers", U1, **{CALL_SYNC.user_id_column: E1})
    world.enreach.load({"users": [{"Id": E1, "UserName": "aino@example.fi"}]})
    settings = {**env, "ROUTING_RULES": json.dumps(AVAILABLE_OWNER)}
    with serving_app(monkeypatch, settings) as host:
        host.run_function("sync_phone_index")
        url = f"{host.url}/api/routing"
        headers = {"X-Benemen-APIKey": KEY}
        body = {"anum": CONTACT, "bnum": POOL}
        raw = requests.post(url, json=body, headers=headers, params={"explain": "true"}, timeout=10)
        assert raw.status_code == 200, (raw.status_code, raw.text)
        answer = raw.json()
        assert answer["answer"] == {"InitialTarget": "+358942421001"}, answer
        world.enreach.set_availability(E1, 3)  # DND
        from routing import runtime

        runtime.router().cache.clear()
        raw = requests.post(url, json=body, headers=headers, params={"explain": "true"}, timeout=10)
        answer = raw.json()
        assert answer["answer"] == {"InitialTarget": FALLBACK}, answer
        assert answer["matches"][0]["rules"][0]["why"] == "owner unavailable: Enreach availability is DND"


def test_open_case_owner_must_be_available(routers, availability, world):
    source, _ = availability
    world.dataverse.load(
        {
            "incidents": [
                {
                    "incidentid": "1c000000-0000-4000-8000-000000000001",
                    "title": "Broken",
                    "statecode": 0,
                    "_customerid_value": C1,
                    "_ownerid_value": U2,
                }
            ]
        }
    )
    rules = [{"name": "case", "kind": "open_case", "require_available": True}, *AVAILABLE_OWNER[1:]]
    assert _call(routers(rules, availability=source), CONTACT) == {"InitialTarget": "+358942421002"}
    world.enreach.set_availability(E2, 3)
    assert _call(routers(rules, availability=source), CONTACT) == {"InitialTarget": FALLBACK}


# -- last agent ---------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [True, False], ids=["indexed", "unindexed"])
def test_last_agent_within_days_in_one_round_trip(routers, world, index):
    router = routers(
        [
            {"name": "last", "kind": "last_agent", "days": 30},
            {"name": "fallback", "kind": "default", "target": FALLBACK},
        ],
        index=index,
    )
    if not index:
        del world.dataverse.tables["enr_phoneindexes"]  # an environment without the phone index
    _call(router, "+358409999999")  # settles whether the index exists
    world.dataverse.reset_requests()
    explained = _call(router, CONTACT, explain=True)
    # Mikko closed the latest call (10 days ago); Sanna's is older, Aino's is still open
    assert explained["answer"] == {"InitialTarget": "+358942421002"} and explained["rule"] == "last"
    assert explained["dataverse_requests"] == 1 and world.dataverse.request_count() == 1
    assert explained["used_index"] is index
    # the account's only call involves it as a party (no regarding) and ended 40 days ago
    assert _call(router, ACCOUNT) == {"InitialTarget": FALLBACK}


def test_last_agent_beyond_days_falls_through_and_a_party_call_counts(routers):
    rules = [
        {"name": "last", "kind": "last_agent", "days": 7},
        {"name": "fallback", "kind": "default", "target": FALLBACK},
    ]
    explained = _call(routers(rules), CONTACT, explain=True)
    assert explained["answer"] == {"InitialTarget": FALLBACK}
    assert explained["matches"][0]["rules"][0]["why"] == (
        "no target: no completed phone call with a user in the last 7 days"
    )
    rules[0]["days"] = 60
    assert _call(routers(rules), ACCOUNT) == {"InitialTarget": "+358942421003"}  # Sanna, as a party, 40 days ago


# -- fail targets ----------------------------------------------------------------------------------


def test_fail_target_is_answered_beside_the_initial_target(routers):
    router = routers([{"name": "owner", "kind": "owner", "fail_target": "+358942429300"}])
    assert _call(router, CONTACT) == {"InitialTarget": "+358942421001", "FailTarget": "+358942429300"}


def test_a_fail_target_equal_to_bnum_is_left_out(routers):
    router = routers([{"name": "owner", "kind": "owner", "fail_target": "+358942429300"}])
    explained = _call(router, CONTACT, "+358 9 4242 9300", explain=True)
    assert explained["answer"] == {"InitialTarget": "+358942421001"}
    assert "FailTarget left out" in explained["reason"]


def test_a_fail_target_in_the_rules_own_pools_is_refused_at_start(env):
    rules = [{"name": "sales", "kind": "owner", "pools": [POOL], "fail_target": POOL}]
    with pytest.raises(SettingsError, match=r"rule 1 \(sales\): 'fail_target' is one of the rule's 'pools'"):
        load_settings({**env, "ROUTING_RULES": json.dumps(rules)})


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "default", "target": OFFICE, "pools": []}, r"'pools' must be a non-empty list"),
        ({"kind": "default", "target": OFFICE, "pools": ["0942420000"]}, r"'pools' entries are E.164"),
        ({"kind": "default", "target": OFFICE, "pools": ["+35800"]}, r"'pools' must be an E.164"),
        ({"kind": "default", "target": OFFICE, "hours": {**HOURS, "timezone": "Helsinki"}}, r"'hours'.timezone"),
        ({"kind": "default", "target": OFFICE, "hours": {**HOURS, "weekly": {"mon-fri": ["8-16"]}}}, r"weekly"),
        ({"kind": "default", "target": OFFICE, "hours": {**HOURS, "weekly": {"fri-mon": ["08:00-16:00"]}}}, "back"),
        ({"kind": "default", "target": OFFICE, "hours": {**HOURS, "weekly": {"mon": ["16:00-08:00"]}}}, "forwards"),
        ({"kind": "default", "target": OFFICE, "hours": {**HOURS, "holidays": ["24.12.2026"]}}, r"'hours'.holidays"),
        ({"kind": "default", "target": OFFICE, "outside_hours": {**HOURS, "tz": "x"}}, r"'outside_hours': unknown"),
        ({"kind": "default", "target": OFFICE, "hours": HOURS, "outside_hours": HOURS}, r"not both"),
        ({"kind": "default", "target": OFFICE, "caller_tables": ["incident"]}, r"'caller_tables' must be one of"),
        ({"kind": "last_agent", "days": 0}, r"'days' must be a whole number"),
        ({"kind": "last_agent", "days": "30"}, r"'days' must be a whole number"),
        ({"kind": "owner", "require_available": "yes"}, r"'require_available' must be true or false"),
        ({"kind": "open_case", "target": OFFICE, "require_available": True}, r"'require_available' needs"),
        ({"kind": "default", "target": OFFICE, "fail_target": "0501234567"}, r"'fail_target' must be an E.164"),
        ({"kind": "default", "target": OFFICE, "fail_target": OFFICE}, r"'fail_target' equals the rule's target"),
        ({"kind": "default", "target": OFFICE, "require_available": True}, r"unknown keys \['require_available'\]"),
        ({"kind": "teleport"}, r"'kind' 'teleport' is unknown"),
    ],
)
def test_rule_validation_names_the_rule_and_the_field(env, rule, message):
    rules = [{"name": "first", "kind": "owner"}, {"name": "checked", **rule}]
    with pytest.raises(SettingsError) as caught:
        load_settings({**env, "ROUTING_RULES": json.dumps(rules)})
    text = str(caught.value)
    assert "ROUTING_RULES rule 2 (checked): " in text
    assert re.search(message, text), text


# -- explain ---------------------------------------------------------------------------------------


def test_explain_lists_every_rule_with_its_outcome_per_record(routers, world):
    world.dataverse.load(
        {"contacts": [{"contactid": "c0000000-0000-4000-8000-0000000000a2", "fullname": "Twin", "telephone1": CONTACT}]}
    )  # a second record with the caller's number, owned by the application user (no direct number)
    router = routers(
        [
            {"name": "support", "kind": "default", "pools": [SUPPORT], "target": "+358942429001"},
            {"name": "swedish", "kind": "language", "table": "contact", "column": "new_preferredlanguage",
             "targets": {"sv": "+358942428888"}},
            {"name": "owner", "kind": "owner"},
            {"name": "fallback", "kind": "default", "target": FALLBACK},
        ]
    )  # fmt: skip
    explained = _call(router, CONTACT, explain=True)
    assert "ambiguous" in explained["reason"] and explained["answer"] is None
    by_name = {m["name"]: m["rules"] for m in explained["matches"]}
    assert [(s["rule"], s["outcome"]) for s in by_name["Liisa"]] == [
        ("support", "skipped"),
        ("swedish", "fired"),
        ("owner", "not reached"),
        ("fallback", "not reached"),
    ]
    assert [(s["rule"], s["outcome"]) for s in by_name["Twin"]] == [
        ("support", "skipped"),
        ("swedish", "skipped"),
        ("owner", "skipped"),
        ("fallback", "fired"),
    ]
    assert by_name["Twin"][1]["why"] == "no target: new_preferredlanguage is None"
    assert by_name["Twin"][2]["why"].startswith("no target: the owner has no number")


# -- the README's example ----------------------------------------------------------------------------


def _readme_rules() -> str:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- routing-rules-example -->\n```json\n(.*?)\n```", text, re.S)
    assert match, "the README lost its routing rules example"
    return match.group(1)


def test_the_readme_example_uses_every_kind_and_condition_and_routes(routers, availability, world):
    example = json.loads(_readme_rules())
    assert {r["kind"] for r in example} == set(KINDS)
    keys = {k for r in example for k in r}
    assert {"pools", "hours", "outside_hours", "caller_tables", "fail_target", "require_available"} <= keys
    assert len(parse_rules(_readme_rules())) == len(example)
    source, _ = availability
    clock = Clock(datetime(2026, 11, 25, 10, 0, tzinfo=UTC))  # Wednesday noon in Helsinki
    router = routers(example, clock=clock, availability=source)
    # the VIP account: field rule with its fail target
    assert _call(router, ACCOUNT) == {"InitialTarget": "+358942420001", "FailTarget": "+358942420009"}
    # the contact: Mikko handled its last call 10 days ago and is available, during opening hours
    assert _call(router, CONTACT) == {"InitialTarget": "+358942421002"}
    clock.now = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)  # Saturday 18:00: closed, language rule next
    assert _call(router, CONTACT) == {"InitialTarget": "+358942420002"}
    # the support pool in the evening
    assert _call(router, CONTACT, "+358942420100") == {"InitialTarget": "+358942420199"}
    # the lead: no last call, key-account rule is not for leads, fallback
    assert _call(router, LEAD) == {"InitialTarget": "+358942420010"}


# -- bursts ------------------------------------------------------------------------------------------


def test_concurrent_callers_of_one_number_share_one_lookup(routers, world):
    router = routers([{"name": "owner", "kind": "owner"}], ROUTING_TIME_BUDGET_SECONDS="4.5")
    world.dataverse.inject(latency_ms=800)
    world.dataverse.reset_requests()
    start = threading.Barrier(10)
    answers = []

    def one() -> None:
        start.wait()
        answers.append(router.route(CONTACT, POOL))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [d.target for d in answers] == ["+358942421001"] * 10
    assert world.dataverse.request_count() == 1  # one lookup, shared (the rest were in flight or cached)
    assert sum(d.dataverse_requests for d in answers) == 1


def test_beyond_the_lookup_limit_a_new_caller_is_answered_at_once(routers, world):
    router = routers([{"name": "owner", "kind": "owner"}], ROUTING_MAX_LOOKUPS="1", ROUTING_TIME_BUDGET_SECONDS="4.5")
    world.dataverse.inject(latency_ms=1500)
    first = threading.Thread(target=router.route, args=(CONTACT, POOL))
    first.start()
    while not len(router.lookups):  # the first lookup is in flight
        threading.Event().wait(0.01)
    refused = router.route(ACCOUNT, POOL)
    first.join()
    assert refused.target is None and "caller lookups already running" in refused.reason
    assert refused.dataverse_requests == 0


def test_without_omnichannel_the_enreach_availability_decides_and_dataverse_is_asked_once(routers, availability, world):
    source, _ = availability
    del world.dataverse.tables["msdyn_agentstatuses"]  # an environment without Omnichannel
    router = routers(AVAILABLE_OWNER, availability=source)
    assert _call(router, CONTACT) == {"InitialTarget": "+358942421001"}
    world.enreach.set_availability(E1, 3)
    router.cache.clear()
    assert _call(router, CONTACT) == {"InitialTarget": FALLBACK}
    assert world.dataverse.request_count("msdyn_agentstatuses") == 1  # learned once, not asked per call


@pytest.mark.parametrize("queue", [5.5, True, {"id": 1}, ["x"], "q" * 65])
def test_a_malformed_queue_id_gets_400_naming_the_field(routers, world, queue):
    router = routers([{"name": "owner", "kind": "owner"}])
    world.dataverse.reset_requests()
    result = handle_routing_request(
        method="POST",
        headers={"Content-Type": "application/json", "X-Benemen-APIKey": KEY},
        params={},
        body=json.dumps({"anum": CONTACT, "bnum": POOL, "extradata": {"CurrQueueId": queue}}).encode(),
        router=lambda: router,
        api_key=KEY,
        basic_user=None,
        basic_password=None,
    )
    assert result.status == 400 and json.loads(result.body)["field"] == "extradata.CurrQueueId"
    assert world.dataverse.request_count() == 0
