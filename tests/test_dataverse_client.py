"""The Dataverse client against the Dataverse emulator over loopback HTTP, with real azure-identity tokens."""

from __future__ import annotations

import logging
import uuid

import pytest

from dataverse import (
    AuthenticationFailed,
    BatchRequest,
    ChangeSet,
    DataverseClient,
    DataverseError,
    DuplicateKey,
    NotFound,
    ServiceUnavailable,
    Throttled,
    TokenUnavailable,
    credential_from_config,
)
from dataverse import filters as f
from emulators._server import FaultRule
from tests.helpers import FAST_RETRY


def _contacts(world, rows):
    world.dataverse.load({"contacts": rows})


def test_whoami_answers_the_application_user(dataverse_client, world):
    from emulators.dataverse import APPLICATION_USER_ID

    assert dataverse_client.whoami()["UserId"] == APPLICATION_USER_ID
    sent = world.dataverse.requests[-1]
    assert sent["path"] == "/api/data/v9.2/WhoAmI"


def test_query_follows_next_link_across_three_pages(dataverse_client, world):
    _contacts(world, [{"fullname": f"Customer {i:02d}", "telephone1": f"+3585000000{i:02d}"} for i in range(25)])
    rows = list(dataverse_client.query("contacts", select=["fullname"], orderby="fullname asc", page_size=10))
    assert [r["fullname"] for r in rows] == [f"Customer {i:02d}" for i in range(25)]
    pages = [r for r in world.dataverse.requests if r["path"].endswith("/contacts")]
    assert len(pages) == 3
    assert "$skiptoken" not in pages[0]["query"] and "$skiptoken" in pages[2]["query"]


def test_query_sends_select_and_a_url_encoded_filter(dataverse_client, world):
    _contacts(
        world,
        [{"fullname": "Plus", "telephone1": "+358501234567"}, {"fullname": "Space", "telephone1": " 358501234567"}],
    )
    rows = list(dataverse_client.query("contacts", select=["fullname"], filter=f.eq("telephone1", "+358501234567")))
    assert [r["fullname"] for r in rows] == ["Plus"]  # '+' travelled as %2B, not as a space


@pytest.mark.parametrize(
    "hostile",
    [
        "' or 1 eq 1",
        "x') or (fullname ne '",
        "%",
        "_",
        "[a-z]%",
        "+358",
        "Ääkkönen ' or ''='",
        "\u202e' or true",
        "a%27 or 1 eq 1",
    ],
)
def test_filter_built_from_hostile_input_matches_nothing_it_should_not(dataverse_client, world, hostile):
    _contacts(world, [{"fullname": "Anna Aalto"}, {"fullname": "Bertta Berg"}, {"fullname": "100% Oy"}])
    exact = list(dataverse_client.query("contacts", select=["fullname"], filter=f.eq("fullname", hostile)))
    assert exact == []
    found = list(dataverse_client.query("contacts", select=["fullname"], filter=f.contains("fullname", hostile)))
    assert [r["fullname"] for r in found] == [
        n for n in ("Anna Aalto", "Bertta Berg", "100% Oy") if hostile.casefold() in n.casefold()
    ]


def test_contains_with_escaped_wildcard_finds_the_literal_percent(dataverse_client, world):
    _contacts(world, [{"fullname": "Anna Aalto"}, {"fullname": "100% Oy"}])
    found = list(dataverse_client.query("contacts", select=["fullname"], filter=f.contains("fullname", "%")))
    assert [r["fullname"] for r in found] == ["100% Oy"]


def test_in_filter_matches_many_values_in_one_query(dataverse_client, world):
    _contacts(world, [{"fullname": n, "mobilephone": p} for n, p in (("A", "+3581"), ("B", "+3582"), ("C", "+3583"))])
    rows = list(
        dataverse_client.query("contacts", select=["fullname"], filter=f.in_("mobilephone", ["+3581", "+3583"]))
    )
    assert sorted(r["fullname"] for r in rows) == ["A", "C"]
    assert world.dataverse.request_count("/contacts") == 1


def test_guid_columns_take_guid_literals_and_in_takes_strings(dataverse_client, world):
    owner = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01"
    _contacts(world, [{"fullname": "A", "_ownerid_value": owner}, {"fullname": "B"}])

    def names(condition):
        return [r["fullname"] for r in dataverse_client.query("contacts", select=["fullname"], filter=condition)]

    assert names(f.eq("_ownerid_value", uuid.UUID(owner))) == ["A"]
    assert names(f.in_("_ownerid_value", [uuid.UUID(owner)])) == ["A"]
    refused = [
        f.eq("_ownerid_value", owner),  # a quoted GUID is an Edm.String
        f.Filter(f"fullname eq {owner}"),  # and a GUID is no string
        f.Filter(f"Microsoft.Dynamics.CRM.In(PropertyName='_ownerid_value',PropertyValues=[{owner}])"),
    ]
    for condition in refused:
        with pytest.raises(DataverseError) as caught:
            names(condition)
        assert caught.value.status == 400, condition


def test_unknown_column_is_a_typed_error_with_dataverse_code(dataverse_client, world):
    with pytest.raises(DataverseError) as caught:
        list(dataverse_client.query("contacts", select=["no_such_column"]))
    assert caught.value.status == 400 and caught.value.code == "0x80060888"
    assert "no_such_column" in caught.value.message


def test_upsert_creates_then_updates_by_alternate_key(dataverse_client, world):
    world.dataverse.add_alternate_key("phonecalls", "enr_callid_key", ["enr_callid"])
    first = dataverse_client.upsert("phonecalls", {"enr_callid": "call-1"}, {"subject": "first"})
    second = dataverse_client.upsert("phonecalls", {"enr_callid": "call-1"}, {"subject": "second"})
    assert first.created and not second.created and first.id == second.id
    rows = world.dataverse.rows("phonecalls")
    assert [(r["enr_callid"], r["subject"]) for r in rows] == [("call-1", "second")]


def test_create_violating_an_alternate_key_raises_duplicate_key(dataverse_client, world):
    world.dataverse.add_alternate_key("phonecalls", "enr_callid_key", ["enr_callid"])
    dataverse_client.create("phonecalls", {"subject": "a", "enr_callid": "dup"})
    with pytest.raises(DuplicateKey) as caught:
        dataverse_client.create("phonecalls", {"subject": "b", "enr_callid": "dup"})
    assert caught.value.code == "0x80060892"


def test_update_never_creates(dataverse_client, world):
    with pytest.raises(NotFound):
        dataverse_client.update("systemusers", str(uuid.uuid4()), {"mobilephone": "+358401"})
    assert len(world.dataverse.rows("systemusers")) == 1  # only the application user


def test_batch_changeset_uses_content_id_and_a_failing_changeset_rolls_back(dataverse_client, world):
    world.dataverse.add_alternate_key("phonecalls", "enr_callid_key", ["enr_callid"])
    good = ChangeSet(
        [
            BatchRequest("POST", "phonecalls", {"subject": "ok", "enr_callid": "c1", "directioncode": False}),
            BatchRequest("PATCH", "$1", {"statecode": 1, "statuscode": 4}),
        ]
    )
    answers = dataverse_client.batch([good, BatchRequest("GET", "WhoAmI")])
    assert [a.status for a in answers] == [204, 204, 200]
    assert answers[0].entity_id() and answers[2].body["UserId"]
    assert [(r["subject"], r["statecode"], r["statuscode"]) for r in world.dataverse.rows("phonecalls")] == [
        ("ok", 1, 4)
    ]

    failing = ChangeSet(
        [
            BatchRequest("POST", "phonecalls", {"subject": "would be lost", "enr_callid": "c2"}),
            BatchRequest("POST", "phonecalls", {"subject": "duplicate", "enr_callid": "c1"}),
        ]
    )
    answers = dataverse_client.batch([failing, BatchRequest("GET", "WhoAmI")])
    assert len(answers) == 1 and answers[0].status == 412  # the batch stopped at the failed change set
    with pytest.raises(DuplicateKey):
        answers[0].raise_for_status()
    assert [r["enr_callid"] for r in world.dataverse.rows("phonecalls")] == ["c1"]  # c2 rolled back


def test_batch_continue_on_error_answers_every_part(dataverse_client, world):
    world.dataverse.add_alternate_key("phonecalls", "enr_callid_key", ["enr_callid"])
    dataverse_client.create("phonecalls", {"subject": "x", "enr_callid": "c1"})
    items = [
        ChangeSet([BatchRequest("POST", "phonecalls", {"subject": "dup", "enr_callid": "c1"})]),
        ChangeSet([BatchRequest("POST", "phonecalls", {"subject": "new", "enr_callid": "c2"})]),
    ]
    answers = dataverse_client.batch(items, continue_on_error=True)
    assert [a.status for a in answers] == [412, 204]
    assert sorted(r["enr_callid"] for r in world.dataverse.rows("phonecalls")) == ["c1", "c2"]


def test_batch_each_gives_one_outcome_per_item_whatever_each_answered(dataverse_client, world):
    world.dataverse.add_alternate_key("phonecalls", "enr_callid_key", ["enr_callid"])
    dataverse_client.create("phonecalls", {"subject": "x", "enr_callid": "c1"})
    items = [
        ChangeSet(  # succeeds: two answers, one outcome
            [
                BatchRequest("POST", "phonecalls", {"subject": "new", "enr_callid": "c2"}),
                BatchRequest("PATCH", "$1", {"statecode": 1, "statuscode": 4}),
            ]
        ),
        ChangeSet(  # fails at its first request: rolled back, one answer
            [
                BatchRequest("POST", "phonecalls", {"subject": "dup", "enr_callid": "c1"}),
                BatchRequest("PATCH", "$1", {"statecode": 1, "statuscode": 4}),
            ]
        ),
        BatchRequest("GET", "WhoAmI"),
    ]
    outcomes = dataverse_client.batch_each(items)
    assert [o.status if o else None for o in outcomes] == [204, 412, 200]
    assert outcomes[2] is not None and outcomes[2].body["UserId"]
    assert sorted(r["enr_callid"] for r in world.dataverse.rows("phonecalls")) == ["c1", "c2"]


def test_deep_insert_binds_owner_regarding_and_parties(dataverse_client, world):
    world.dataverse.load(
        {
            "contacts": [{"contactid": "c0c0c001-2222-4000-8000-000000000001", "fullname": "Liisa"}],
            "systemusers": [{"systemuserid": "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01", "fullname": "Aino"}],
        }
    )
    user, contact = "4b7e2a10-1c3d-4e5f-8a9b-0c1d2e3f4a01", "c0c0c001-2222-4000-8000-000000000001"
    new_id = dataverse_client.create(
        "phonecalls",
        {
            "subject": "Incoming call",
            "ownerid@odata.bind": f"/systemusers({user})",
            "regardingobjectid_contact_phonecall@odata.bind": f"/contacts({contact})",
            "phonecall_activity_parties": [
                {"partyid_contact@odata.bind": f"/contacts({contact})", "participationtypemask": 1},
                {"partyid_systemuser@odata.bind": f"/systemusers({user})", "participationtypemask": 2},
            ],
        },
    )
    call = dataverse_client.get("phonecalls", new_id, select=["_ownerid_value", "_regardingobjectid_value"])
    assert call["_ownerid_value"] == user and call["_regardingobjectid_value"] == contact
    parties = {(p["_partyid_value"], p["participationtypemask"]) for p in world.dataverse.rows("activityparties")}
    assert parties == {(contact, 1), (user, 2)}


def test_binding_a_missing_record_fails(dataverse_client, world):
    with pytest.raises(NotFound):
        dataverse_client.create("phonecalls", {"subject": "x", "ownerid@odata.bind": f"/systemusers({uuid.uuid4()})"})
    assert world.dataverse.rows("phonecalls") == []


def test_429_is_retried_after_retry_after(dataverse_client, world, caplog):
    world.dataverse.inject(FaultRule(status=429, retry_after=1, path="WhoAmI", count=1))
    with caplog.at_level(logging.WARNING, logger="core.retry"):
        assert dataverse_client.whoami()["UserId"]
    assert world.dataverse.request_count("WhoAmI") == 2
    waits = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(waits) == 1 and "in 1.00s: HTTP 429" in waits[0]


def test_throttling_past_the_retry_policy_raises_throttled(dataverse_client, world):
    world.dataverse.inject(FaultRule(status=429, retry_after=0, path="WhoAmI", count=10))
    with pytest.raises(Throttled):
        dataverse_client.whoami()
    assert world.dataverse.request_count("WhoAmI") == FAST_RETRY.max_attempts


def test_retry_after_over_the_cap_is_not_waited_for(dataverse_client, world):
    world.dataverse.inject(FaultRule(status=429, retry_after=600, path="WhoAmI", count=1))
    with pytest.raises(Throttled):
        dataverse_client.whoami()
    assert world.dataverse.request_count("WhoAmI") == 1


def test_dropped_connection_retries_a_get_but_not_a_create(dataverse_client, world):
    world.dataverse.inject(FaultRule(status=0, path="WhoAmI", count=1))
    assert dataverse_client.whoami()["UserId"]
    assert world.dataverse.request_count("WhoAmI") == 2
    world.dataverse.inject(FaultRule(status=0, path="phonecalls", method="POST", count=1))
    with pytest.raises(ServiceUnavailable, match="may or may not have been applied"):
        dataverse_client.create("phonecalls", {"subject": "x"})
    assert world.dataverse.request_count("phonecalls", method="POST") == 1


def test_5xx_is_retried_with_backoff(dataverse_client, world):
    world.dataverse.inject(FaultRule(status=503, path="WhoAmI", count=2))
    assert dataverse_client.whoami()["UserId"]
    assert world.dataverse.request_count("WhoAmI") == 3


def test_expired_token_is_refreshed_once(dataverse_client, world):
    dataverse_client.whoami()
    issued = world.issuer.issued_count
    world.issuer.expire_all()
    assert dataverse_client.whoami()["UserId"]
    assert world.issuer.issued_count == issued + 1
    assert world.dataverse.request_count("WhoAmI") == 3  # ok, 401, ok
    dataverse_client.whoami()
    assert world.issuer.issued_count == issued + 1  # the new token is cached


def test_a_token_the_service_never_accepts_raises_authentication_failed(settings, world):
    from azure.identity import ClientSecretCredential

    class ForeignTokens:
        def get_token(self, *scopes, **kwargs):
            from azure.core.credentials import AccessToken

            return AccessToken("not-issued-by-the-emulator", 2**31)

    client = DataverseClient(settings.dataverse.url, credential=ForeignTokens(), retry=FAST_RETRY)
    with pytest.raises(AuthenticationFailed, match="application user"):
        client.whoami()
    assert world.dataverse.request_count("WhoAmI") == 2
    assert ClientSecretCredential  # the real credential is covered by the other tests


def test_wrong_client_secret_is_a_token_error_naming_the_cause(settings, world):
    from dataclasses import replace

    wrong = replace(settings, dataverse=replace(settings.dataverse, client_secret="not-the-secret"))
    client = DataverseClient(
        settings.dataverse.url, credential=credential_from_config(wrong.dataverse), retry=FAST_RETRY
    )
    with pytest.raises(TokenUnavailable, match="Invalid client secret"):
        client.whoami()
    assert world.dataverse.request_count() == 0


def test_deadline_bounds_slow_answers(dataverse_client, world):
    import time

    from dataverse import DeadlineExceeded

    world.dataverse.inject(latency_ms=400)
    with pytest.raises(DeadlineExceeded):
        dataverse_client.whoami(deadline=time.monotonic() + 0.1)
