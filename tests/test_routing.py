"""The SmartRouting webhook against the Dataverse emulator (loopback HTTP) and Azurite."""

from __future__ import annotations

import base64
import json

import pytest

from bridge.settings import load_settings
from core.state import CheckpointStore
from emulators._server import FaultRule
from routing.http import handle_routing_request
from routing.index_sync import sync_phone_index
from routing.runtime import build_router
from sandbox.services import provision_app_schema
from tests.helpers import dataverse_client_for

U1, U2, U3 = (f"4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a0{i}" for i in (1, 2, 3))
POOL = "+358942420000"
KEY = "test-routing-key-0123456789"

DATA = {
    "systemusers": [
        {"systemuserid": U1, "fullname": "Aino", "address1_telephone1": "+358 9 4242 1001"},
        {"systemuserid": U2, "fullname": "Mikko", "address1_telephone1": "+358942421002"},
        {"systemuserid": U3, "fullname": "Sanna", "address1_telephone1": "09 4242 1003"},
    ],
    "accounts": [
        {
            "accountid": "a0000000-0000-4000-8000-000000000001",
            "name": "Spaced",
            "telephone1": "+358 50 123 4567",
            "_ownerid_value": U1,
            "accountcategorycode": 1,
        },
        {
            "accountid": "a0000000-0000-4000-8000-000000000002",
            "name": "Brackets",
            "telephone1": "(09) 123 456",
            "_ownerid_value": U2,
            "accountcategorycode": 2,
        },
        {
            "accountid": "a0000000-0000-4000-8000-000000000003",
            "name": "Double zero",
            "telephone2": "00358451234567",
            "_ownerid_value": U3,
            "accountcategorycode": 2,
        },
    ],
    "contacts": [
        {
            "contactid": "c0000000-0000-4000-8000-000000000001",
            "fullname": "Dashed",
            "mobilephone": "050-765 4321",
            "_ownerid_value": U1,
            "new_preferredlanguage": "sv",
        },
        {
            "contactid": "c0000000-0000-4000-8000-000000000002",
            "fullname": "Decoy",
            "telephone1": "+358 44 123 4567",
            "_ownerid_value": U2,
        },
    ],
    "leads": [
        {
            "leadid": "1ead0000-0000-4000-8000-000000000001",
            "fullname": "Lead",
            "mobilephone": "+358401234321",
            "_ownerid_value": U3,
        },
    ],
}


@pytest.fixture()
def env(world, azurite):
    return world.app_settings({"ROUTING_API_KEY": KEY, "AzureWebJobsStorage": azurite.connection_string})


def _router(env, **overrides):
    settings = load_settings({**env, **overrides})
    client = dataverse_client_for(settings)
    return build_router(settings, client), settings, client


def _index(world, settings, client, *, full=True):
    store = CheckpointStore(settings.storage_connection_string, table_name="t" + world.dataverse.url[-5:])
    return sync_phone_index(
        client, store, phone_columns=settings.matching.phone_columns, region=settings.matching.region, full=full
    )


@pytest.fixture()
def indexed(world, env):
    world.dataverse.load(DATA)
    provision_app_schema(world.dataverse)
    router, settings, client = _router(env)
    report = _index(world, settings, client)
    assert report.failed == 0
    world.dataverse.reset_requests()
    yield router, settings, client
    router.close()


@pytest.fixture()
def unindexed(world, env):
    world.dataverse.load(DATA)
    router, settings, client = _router(env)
    yield router, settings, client
    router.close()


@pytest.mark.parametrize(
    ("caller", "owner_number"),
    [
        ("+358501234567", "+358942421001"),  # stored "+358 50 123 4567"
        ("+358507654321", "+358942421001"),  # stored "050-765 4321"
        ("+3589123456", "+358942421002"),  # stored "(09) 123 456"
        ("+358451234567", "+358942421003"),  # stored "00358451234567"
        ("+358401234321", "+358942421003"),  # lead, stored in E.164
    ],
)
def test_every_stored_format_is_found_through_the_index_in_one_request(indexed, world, caller, owner_number):
    router, _, _ = indexed
    router.route("+358400000000", POOL)  # settles that the index exists
    world.dataverse.reset_requests()
    decision = router.route(caller, POOL)
    assert (decision.target, decision.rule) == (owner_number, "owner")
    assert decision.used_index and decision.dataverse_requests == 1
    assert world.dataverse.request_count() == 1
    query = world.dataverse.requests[0]["query"]
    assert "enr_e164 eq '" + caller + "'" in query and "contains" not in query and "endswith" not in query


def test_without_the_index_standard_formats_are_found_with_eq_in_one_batch(unindexed, world):
    router, _, _ = unindexed
    found = {c: router.route(c, POOL).target for c in ("+358451234567", "+358401234321", "+358501234567")}
    assert found["+358451234567"] == "+358942421003"  # 00-prefixed form
    assert found["+358401234321"] == "+358942421003"  # E.164
    assert found["+358501234567"] is None  # odd spacing needs the index: no guessing
    assert world.dataverse.request_count() == 3 and world.dataverse.request_count("$batch") == 3
    assert all("contains" not in r["query"] and "endswith" not in r["query"] for r in world.dataverse.requests)


def test_a_number_sharing_the_last_seven_digits_is_not_a_match(indexed):
    router, _, _ = indexed
    decision = router.route("+358451234567", POOL)
    assert [c.name for c in decision.candidates] == ["Double zero"]
    decision = router.route("+358441234567", POOL)
    assert [c.name for c in decision.candidates] == ["Decoy"] and decision.target == "+358942421002"
    decision = router.route("+358401234567", POOL)  # shares 1234567 with three customers, matches none
    assert decision.target is None and decision.candidates == ()


def test_ambiguous_number_is_not_routed_but_agreeing_records_are(world, env):
    world.dataverse.load(DATA)
    world.dataverse.load(
        {
            "contacts": [
                {
                    "contactid": "c0000000-0000-4000-8000-0000000000a1",
                    "fullname": "Shared 1",
                    "telephone1": "+358 20 555 0101",
                    "_ownerid_value": U1,
                },
                {
                    "contactid": "c0000000-0000-4000-8000-0000000000a2",
                    "fullname": "Shared 2",
                    "telephone1": "020 5550101",
                    "_ownerid_value": U2,
                },
                {
                    "contactid": "c0000000-0000-4000-8000-0000000000b1",
                    "fullname": "Same owner",
                    "telephone1": "020 5550202",
                    "_ownerid_value": U3,
                },
            ],
            "accounts": [
                {
                    "accountid": "a0000000-0000-4000-8000-0000000000b2",
                    "name": "Same owner Oy",
                    "telephone1": "+358205550202",
                    "_ownerid_value": U3,
                },
            ],
        }
    )
    provision_app_schema(world.dataverse)
    router, settings, client = _router(env)
    _index(world, settings, client)
    ambiguous = router.route("+358205550101", POOL)
    assert ambiguous.target is None and "ambiguous" in ambiguous.reason and len(ambiguous.candidates) == 2
    agreeing = router.route("+358205550202", POOL)
    assert agreeing.target == "+358942421003" and len(agreeing.candidates) == 2
    router.close()


def test_rules_fire_in_order_and_each_kind_routes(world, env):
    world.dataverse.load(DATA)
    world.dataverse.load(
        {
            "incidents": [
                {
                    "incidentid": "1c000000-0000-4000-8000-000000000001",
                    "title": "Broken",
                    "statecode": 0,
                    "_customerid_value": "a0000000-0000-4000-8000-000000000003",
                    "_ownerid_value": U2,
                },
                {
                    "incidentid": "1c000000-0000-4000-8000-000000000002",
                    "title": "Closed",
                    "statecode": 1,
                    "_customerid_value": "a0000000-0000-4000-8000-000000000002",
                    "_ownerid_value": U1,
                },
            ]
        }
    )
    provision_app_schema(world.dataverse)
    rules = json.dumps(
        [
            {
                "name": "vip",
                "kind": "field",
                "table": "account",
                "column": "accountcategorycode",
                "equals": 1,
                "target": "+358942429999",
            },
            {"name": "case", "kind": "open_case", "target": "owner"},
            {
                "name": "swedish",
                "kind": "language",
                "table": "contact",
                "column": "new_preferredlanguage",
                "targets": {"SV": "+358942428888"},
            },
            {"name": "leads", "kind": "owner", "tables": ["lead"]},
            {"name": "fallback", "kind": "default", "target": "+358942427777"},
        ]
    )
    router, settings, client = _router(env, ROUTING_RULES=rules)
    _index(world, settings, client)
    expected = {
        "+358501234567": ("+358942429999", "vip"),
        "+358451234567": ("+358942421002", "case"),  # open case owned by U2, account owned by U3
        "+358507654321": ("+358942428888", "swedish"),
        "+358401234321": ("+358942421003", "leads"),
        "+3589123456": ("+358942427777", "fallback"),  # its only case is closed
    }
    for caller, (target, rule) in expected.items():
        decision = router.route(caller, POOL)
        assert (decision.target, decision.rule) == (target, rule), caller
    router.close()


def test_target_equal_to_bnum_is_never_answered(indexed):
    router, _, _ = indexed
    decision = router.route("+358501234567", "+358 9 4242 1001")  # the owner's number is the pool itself
    assert decision.target is None and "bnum" in decision.reason


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (FaultRule(status=429, retry_after=30, count=99), "Throttled"),
        (FaultRule(status=503, count=99), "ServiceUnavailable"),
        (FaultRule(status=0, count=99), "ServiceUnavailable"),
    ],
)
def test_dataverse_faults_mean_no_routing(indexed, world, fault, reason):
    router, _, _ = indexed
    world.dataverse.inject(fault)
    decision = router.route("+358501234567", POOL)
    assert decision.target is None and reason in decision.reason


def test_slow_dataverse_answers_204_within_the_budget(world, env):
    world.dataverse.load(DATA)
    router, _, _ = _router(env, ROUTING_TIME_BUDGET_SECONDS="0.3")
    world.dataverse.inject(latency_ms=3000)
    decision = router.route("+358501234567", POOL)
    assert decision.target is None and ("budget" in decision.reason or "Deadline" in decision.reason)
    assert decision.elapsed_ms < 3000  # did not wait for Dataverse's answer
    router.close()


def test_token_failure_and_unreachable_dataverse_mean_no_routing(world, env):
    world.dataverse.load(DATA)
    router, _, _ = _router(env, AZURE_CLIENT_SECRET="wrong-secret")
    decision = router.route("+358501234567", POOL)
    assert decision.target is None and "TokenUnavailable" in decision.reason
    router.close()
    router, _, _ = _router(env, DATAVERSE_URL="http://127.0.0.1:9")
    assert router.route("+358501234567", POOL).target is None
    router.close()


def test_cache_hit_makes_no_dataverse_request(indexed, world):
    router, _, _ = indexed
    first = router.route("+358501234567", POOL)
    count = world.dataverse.request_count()
    second = router.route("+358501234567", "+358942420001")
    assert world.dataverse.request_count() == count
    assert second.cached and not first.cached and second.target == first.target
    unknown = router.route("+358409999999", POOL)
    count = world.dataverse.request_count()
    assert router.route("+358409999999", POOL).cached and world.dataverse.request_count() == count
    assert unknown.target is None


def test_cache_ttl_zero_disables_the_cache(world, env):
    world.dataverse.load(DATA)
    router, _, _ = _router(env, ROUTING_CACHE_TTL_SECONDS="0")
    router.route("+358451234567", POOL)
    router.route("+358451234567", POOL)
    assert world.dataverse.request_count() == 2
    router.close()


def test_index_job_picks_up_a_changed_record(indexed, world):
    router, settings, client = indexed
    router.cache.clear()
    world.dataverse.touch("accounts", "a0000000-0000-4000-8000-000000000002", telephone1="+358 40 111 2222")
    report = _index(world, settings, client, full=False)
    assert (report.written, report.deleted, report.failed) == (1, 0, 0)
    assert report.scanned >= 1
    assert router.route("+358401112222", POOL).target == "+358942421002"
    assert router.route("+3589123456", POOL).target is None  # the old number left the index
    again = _index(world, settings, client, full=False)
    assert again.written == 0 and again.failed == 0


def test_index_job_removes_a_cleared_number_and_keeps_its_checkpoint_on_failure(indexed, world):
    from dataverse import ServiceUnavailable

    _, settings, client = indexed
    world.dataverse.touch("leads", "1ead0000-0000-4000-8000-000000000001", mobilephone=None)
    report = _index(world, settings, client, full=False)
    assert report.deleted == 1
    world.dataverse.touch("contacts", "c0000000-0000-4000-8000-000000000002", telephone1="+358 44 999 0000")
    world.dataverse.inject(FaultRule(status=500, path="$batch", count=99))
    with pytest.raises(ServiceUnavailable):
        _index(world, settings, client, full=False)
    world.dataverse.clear_faults()
    store = CheckpointStore(settings.storage_connection_string, table_name="t" + world.dataverse.url[-5:])
    assert store.read("phone_index").value == report.checkpoint  # not moved past the failed writes
    retried = _index(world, settings, client, full=False)
    assert retried.written == 1 and retried.failed == 0


def test_index_job_reports_a_failed_row_and_does_not_move_the_checkpoint(indexed, world):
    _, settings, client = indexed
    store = CheckpointStore(settings.storage_connection_string, table_name="t" + world.dataverse.url[-5:])
    before = store.read("phone_index").value
    world.dataverse.touch("accounts", "a0000000-0000-4000-8000-000000000001", telephone2="+358 40 333 4444")
    world.dataverse.touch("contacts", "c0000000-0000-4000-8000-000000000002", telephone1="+358 44 999 0000")
    world.dataverse.tables["enr_phoneindexes"].columns.discard("_enr_contact_value")  # contact rows are refused
    report = _index(world, settings, client, full=False)
    assert report.failed == 1 and report.written == 2  # the account's row went in; the contact's did not
    assert store.read("phone_index").value == before == report.checkpoint


# -- the HTTP contract ---------------------------------------------------------------------------


def _call(router, body, *, headers=None, params=None, method="POST"):
    all_headers = {"Content-Type": "application/json", "X-Benemen-APIKey": KEY}
    all_headers.update(headers or {})
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return handle_routing_request(
        method=method,
        headers=all_headers,
        params=params or {},
        body=raw,
        router=lambda: router,
        api_key=KEY,
        basic_user="enreach",
        basic_password="pw",
    )


def test_webhook_answers_initial_target_or_204(indexed):
    router, _, _ = indexed
    routed = _call(router, {"anum": "+358501234567", "bnum": POOL, "extradata": {"CallId": "x"}})
    assert routed.status == 200 and json.loads(routed.body) == {"InitialTarget": "+358942421001"}
    unknown = _call(router, {"anum": "+358409999999", "bnum": POOL})
    assert unknown.status == 204 and unknown.body == b""


def test_explain_returns_the_reasoning(indexed):
    router, _, _ = indexed
    result = _call(router, {"anum": "+358501234567", "bnum": POOL}, params={"explain": "true"})
    body = json.loads(result.body)
    assert body["answer"] == {"InitialTarget": "+358942421001"} and body["rule"] == "owner"
    assert body["matches"][0]["name"] == "Spaced"


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [
        (b"not json", None, 400, "body"),
        ([1, 2], None, 400, "body"),
        ({"bnum": POOL}, None, 400, "anum"),
        ({"anum": 358501234567, "bnum": POOL}, None, 400, "anum"),
        ({"anum": "+358501234567"}, None, 400, "bnum"),
        ({"anum": "+358501234567", "bnum": ""}, None, 400, "bnum"),
        ({"anum": "+3" * 40, "bnum": POOL}, None, 400, "anum"),
        ({"anum": "+358501234567", "bnum": POOL, "extradata": "x"}, None, 400, "extradata"),
        ({"anum": "+358501234567", "bnum": POOL, "targetid": 5}, None, 400, "targetid"),
        ({"anum": "+358501234567", "bnum": POOL}, {"Content-Type": "text/plain"}, 415, "Content-Type"),
        (b'{"anum": "' + b"1" * 20000 + b'"}', None, 413, "body"),
        (b"[" * 5000 + b"]" * 5000, None, 400, "body"),
    ],
)
def test_bad_input_gets_400_naming_the_field_and_no_lookup(indexed, world, body, headers, status, field):
    router, _, _ = indexed
    result = _call(router, body, headers=headers)
    assert result.status == status
    assert json.loads(result.body)["field"] == field
    assert world.dataverse.request_count() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Benemen-APIKey": "wrong"},
        {"X-Benemen-APIKey": ""},
        {"X-Benemen-APIKey": KEY[:-1]},
        {"X-Benemen-APIKey": None, "Authorization": "Basic " + base64.b64encode(b"enreach:nope").decode()},
        {"X-Benemen-APIKey": None, "Authorization": "Basic !!!"},
        {"X-Benemen-APIKey": None, "Authorization": "Bearer " + KEY},
    ],
)
def test_wrong_or_missing_credentials_get_401(indexed, world, headers):
    router, _, _ = indexed
    all_headers = {k: v for k, v in headers.items() if v is not None}
    raw = json.dumps({"anum": "+358501234567", "bnum": POOL}).encode()
    result = handle_routing_request(
        method="POST",
        headers={"Content-Type": "application/json", **all_headers},
        params={},
        body=raw,
        router=lambda: router,
        api_key=KEY,
        basic_user="enreach",
        basic_password="pw",
    )
    assert result.status == 401 and "X-Benemen-APIKey" in json.loads(result.body)["error"]
    assert world.dataverse.request_count() == 0


def test_basic_auth_is_accepted(indexed):
    router, _, _ = indexed
    basic = "Basic " + base64.b64encode(b"enreach:pw").decode()
    result = handle_routing_request(
        method="POST",
        headers={"Content-Type": "application/json", "authorization": basic},
        params={},
        body=b'{"anum": "+358501234567", "bnum": "+358942420000"}',
        router=lambda: router,
        api_key=None,
        basic_user="enreach",
        basic_password="pw",
    )
    assert result.status == 200


@pytest.mark.parametrize("anum", ["' or 1 eq 1", "+358') or (true", "%27", "50%", "+358 50 123 4567'--", "١٢٣٤٥٦٧"])
def test_hostile_numbers_never_reach_a_filter(indexed, world, anum):
    router, _, _ = indexed
    result = _call(router, {"anum": anum, "bnum": POOL})
    assert result.status in (200, 204)
    for request in world.dataverse.requests:
        assert "or 1 eq 1" not in request["query"] and "(true" not in request["query"]


def test_routing_logs_one_masked_line_per_decision(indexed, caplog):
    import logging

    router, _, _ = indexed
    with caplog.at_level(logging.INFO, logger="routing"):
        _call(router, {"anum": "+358501234567", "bnum": POOL})
    lines = [r.getMessage() for r in caplog.records if r.name == "routing"]
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "routing_decision" and line["status"] == 200 and line["rule"] == "owner"
    assert "+358501234567" not in lines[0] and "1234567" not in lines[0] and "+358942421001" not in lines[0]


def test_settings_refuse_bad_rules_naming_the_rule(env):
    from bridge.settings import SettingsError

    bad = json.dumps(
        [
            {"kind": "owner"},
            {"name": "vip", "kind": "field", "table": "account", "column": "x", "equals": 1, "target": "0501234567"},
        ]
    )
    with pytest.raises(SettingsError, match=r"rule 2 \(vip\): 'target' must be an E.164"):
        load_settings({**env, "ROUTING_RULES": bad})
