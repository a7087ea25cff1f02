"""Fuzzing: properties of the number normaliser and the request parsers (hypothesis), and 10,000
generated webhook bodies (valid, malformed, hostile) through the real routing HTTP function."""

from __future__ import annotations

import json
import os
import random
import re
import string

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.odata import compile_filter
from matching import looks_like_e164, stored_forms, to_e164
from routing.http import handle_routing_request

PHONEISH = st.text(alphabet="+0123456789 ()-./#x", max_size=30)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(PHONEISH, st.text(max_size=40)), st.sampled_from(["FI", "SE", "US", "GB", "DE"]))
def test_normaliser_returns_e164_or_none_and_is_idempotent(raw, region):
    result = to_e164(raw, region)
    assert result is None or looks_like_e164(result)
    if result is not None:
        assert to_e164(result, region) == result


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=100_000, max_value=99_999_999_999), st.sampled_from(["358", "46", "1", "44", "49"]))
def test_every_stored_form_normalises_back_to_the_same_number(national, country):
    e164 = to_e164(f"+{country}{national}", "FI")
    if e164 is None:
        return
    region = {"358": "FI", "46": "SE", "1": "US", "44": "GB", "49": "DE"}[country]
    for form in stored_forms(e164, region):
        assert to_e164(form, region) == e164, form


def _router_never_called():
    raise AssertionError("the router must not be reached by a rejected request")


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_routing_parser_answers_4xx_for_anything_that_is_not_a_valid_call(body):
    result = handle_routing_request(
        method="POST",
        headers={"Content-Type": "application/json", "X-Benemen-APIKey": "k" * 20},
        params={},
        body=body,
        router=_router_never_called,
        api_key="k" * 20,
        basic_user=None,
        basic_password=None,
    )
    assert 400 <= result.status < 500
    assert "field" in json.loads(result.body)


@settings(max_examples=1000, deadline=None)
@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=20) | st.booleans(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=5),
        max_leaves=10,
    )
)
def test_enreach_event_parser_raises_only_event_errors(payload):
    from enreach import EventError, EventMap, parse_event

    names = EventMap(call_start=("a", ""), call_end=("b",), availability_changed=("c",))
    for candidate in (payload, {"EventType": "a", **payload} if isinstance(payload, dict) else payload):
        try:
            parse_event(candidate, names)
        except EventError as error:
            assert error.field in {"body", *names.event_type, *names.user_id, *names.call_id, *names.event_id}


# -- 10,000 bodies through the real HTTP function ----------------------------------------------

HOSTILE = [
    "' or 1 eq 1",
    "') or true or ('",
    "%27",
    "%",
    "_",
    "[",
    "+358%",
    "$filter=",
    "&$top=1",
    "\u0000",
    "😀",
    "١٢٣٤٥٦٧٨٩",
    "+358 50 123 4567'--",
    "0" * 31,
    "9" * 40,
    "+" + "1" * 15,
    "null",
    "{}",
    "<script>",
    "\\u0027",
    "..",
    "+358501234567\n",
    "+358501234567' or '1'='1",
]
OWNERS = ["+358942421001", "+358942421002"]
PHONE_COLUMNS = {"telephone1", "telephone2", "telephone3", "mobilephone"}


def _body(rng: random.Random) -> tuple[bytes, str | None]:
    """(body, bnum) with roughly a third valid calls, a third malformed, a third hostile."""
    kind = rng.random()
    bnum = rng.choice([*OWNERS, "+358942420000"])
    if kind < 0.35:
        caller = rng.choice(
            ["+358501234567", "+358507654321", "+358409999999", "050 123 4567", f"+35840{rng.randint(0, 9999999):07d}"]
        )
        payload = {"anum": caller, "bnum": bnum}
        if rng.random() < 0.5:
            payload["extradata"] = {"CallId": str(rng.random()), "DYN_x": rng.choice(HOSTILE)}
        return json.dumps(payload).encode(), bnum
    if kind < 0.7:
        payload = {"anum": rng.choice(HOSTILE), "bnum": rng.choice([*HOSTILE, bnum])}
        return json.dumps(payload).encode(), payload["bnum"]
    choices = [
        lambda: b"",
        lambda: b"not json",
        lambda: json.dumps([1, 2]).encode(),
        lambda: json.dumps({"anum": rng.randint(0, 10**12), "bnum": bnum}).encode(),
        lambda: json.dumps({"anum": {"nested": ["x"]}, "bnum": bnum}).encode(),
        lambda: json.dumps({"anum": "+358501234567", "bnum": bnum, "extradata": "x"}).encode(),
        lambda: (b"[" * rng.randint(1, 3000)) + (b"]" * rng.randint(0, 3000)),
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))),
        lambda: json.dumps(
            {"anum": "".join(rng.choices(string.printable, k=rng.randint(1, 60))), "bnum": bnum}
        ).encode(),
        lambda: json.dumps({"anum": "+358501234567", "bnum": "x" * rng.randint(1, 50_000)}).encode(),
    ]
    return rng.choice(choices)(), None


_LITERAL = re.compile(r"'((?:[^']|'')*)'")


@pytest.fixture(params=["indexed", "unindexed"])
def http_app(request, world, azurite, monkeypatch):
    """The app's HTTP functions on loopback, routing through the phone index or (without it) by
    the exact stored forms in one $batch."""
    from sandbox.services import provision_app_schema
    from tests.helpers import serving_app

    world.dataverse.load(
        {
            "systemusers": [
                {
                    "systemuserid": f"4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a0{i}",
                    "fullname": f"U{i}",
                    "address1_telephone1": n,
                }
                for i, n in enumerate(OWNERS, start=1)
            ],
            "accounts": [
                {
                    "name": "A",
                    "telephone1": "+358 50 123 4567",
                    "_ownerid_value": "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01",
                }
            ],
            "leads": [
                {
                    "fullname": "L",
                    "mobilephone": "+358409999999",
                    "_ownerid_value": "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a02",
                }
            ],
            "contacts": [
                {
                    "fullname": "C",
                    "mobilephone": "050-765 4321",
                    "_ownerid_value": "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a02",
                }
            ],
        }
    )
    if request.param == "indexed":
        provision_app_schema(world.dataverse)
    settings = world.app_settings(
        {
            "ROUTING_API_KEY": "fuzz-routing-key-0123456789",
            "AzureWebJobsStorage": azurite.connection_string,
            "ROUTING_CACHE_TTL_SECONDS": "0",
        }
    )
    with serving_app(monkeypatch, settings) as host:
        if request.param == "indexed":
            host.run_function("sync_phone_index")
            assert world.dataverse.rows("enr_phoneindexes"), "the phone index sync wrote nothing"
        world.dataverse.reset_requests()  # from here on, only what the webhook asked
        yield host


def test_ten_thousand_generated_bodies_through_the_http_function(http_app, world):
    rng = random.Random(20261124)
    session = requests.Session()
    url = f"{http_app.url}/api/routing"
    statuses: dict[int, int] = {}
    count = int(os.environ.get("FUZZ_BODIES", "10000"))
    for _ in range(count):
        body, bnum = _body(rng)
        content_type = "application/json" if rng.random() < 0.97 else rng.choice(["text/plain", "", "application/xml"])
        response = session.post(
            url,
            data=body,
            timeout=30,
            headers={"Content-Type": content_type, "X-Benemen-APIKey": "fuzz-routing-key-0123456789"},
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (body[:200], response.text)
        if response.status_code == 200:
            target = response.json()["InitialTarget"]
            assert looks_like_e164(target) and target != bnum and to_e164(bnum or "", "FI") != target
    # The mix really exercised every outcome: routed, not routed, and rejected.
    assert statuses.get(200, 0) > count // 50, statuses
    assert statuses.get(204, 0) > count // 20, statuses
    assert statuses.get(400, 0) > count // 10, statuses
    # Every query Dataverse received parses, and its only string literals are phone columns and
    # numbers the app derived from normalised input (E.164 or a stored form of it), never request text.
    round_trips = list(world.dataverse.requests)
    assert len(round_trips) <= statuses[200] + statuses[204], "more than one round trip per call"
    received = [
        r  # the configuration rows' reads (no request text in them) are not caller lookups
        for r in [r for r in round_trips if not r["path"].endswith("$batch")] + list(world.dataverse.batch_parts)
        if not r["path"].endswith(("/enr_bridgesettings", "/enr_routingrules"))
    ]
    assert {r["method"] for r in received} == {"GET"}, "the webhook only reads"
    queries = [r["query"] for r in received]
    asked = {r["path"].rsplit("/", 1)[-1] for r in received}
    # the configuration rows' refreshes (one $batch each, in the background) are not caller lookups
    refreshes = sum(1 for r in world.dataverse.batch_parts if r["path"].endswith("/enr_bridgesettings"))
    if "enr_phoneindexes" in world.dataverse.tables:  # the first lookup learns that the index exists
        assert "enr_phoneindexes" in asked and world.dataverse.request_count("$batch") - refreshes <= 1, asked
    else:
        assert asked >= {"contacts", "accounts", "leads"}, asked
    for query in set(queries):  # the same query repeats: check each once
        text = re.search(r"\$filter=(.*?)(&\$|$)", query)
        assert text, query
        compile_filter(text.group(1), lambda name: True)
        for literal in _LITERAL.findall(text.group(1)):
            if re.fullmatch(r"[a-z_][a-z0-9_]*", literal):  # In(PropertyName='telephone1', ...)
                assert literal in PHONE_COLUMNS, literal
                continue
            e164 = to_e164(literal, "FI")
            assert e164 is not None and literal in {e164, *stored_forms(e164, "FI")}, literal
